// Fused CUDA kernels of fcn's CuPy backend (fcn.ops.FusedCupyOps). Opt-in; not yet verified on a GPU.
//
// Compiled at run time by NVRTC (cupy.RawModule), with the options in fcn.ops.cuda.COMPILE_OPTIONS, which
// define FCN_MT_MAX (tensors per multi-tensor launch) and FCN_CHUNK (elements per block in those launches).
// Every kernel is `extern "C"`, so its entry name in the module is exactly the name Python launches
// (fcn.ops.cuda.KERNEL_NAMES); each body is a template instantiated explicitly for float and double (and, for
// the label type, int and long long) by the wrappers at the end of each section.
//
// Conventions:
// - Sizes and indices are 64-bit (`i64`); a grid's y dimension walks rows with a grid-stride loop, so any
//   number of rows works with grid.y <= 65535.
// - Reductions are deterministic: per-block partial sums in double, then the last block to finish adds the
//   partials in a fixed order (the "threadfence reduction" pattern) and resets the block counter, so one
//   launch gives the final value, the same bits on every run, and the kernel is safe to replay in a graph.
// - No kernel reads the host or synchronises with it: results stay on the device.

#ifndef FCN_MT_MAX
#error "FCN_MT_MAX must be defined (fcn.ops.cuda.COMPILE_OPTIONS)"
#endif
#ifndef FCN_CHUNK
#error "FCN_CHUNK must be defined (fcn.ops.cuda.COMPILE_OPTIONS)"
#endif

typedef long long i64;
typedef unsigned long long u64;

#define FCN_FULL_MASK 0xffffffffu

// -- numeric helpers ---------------------------------------------------------------------------------------

template <typename T>
struct Num;

template <>
struct Num<float> {
    static __device__ __forceinline__ float exp_(float x) { return expf(x); }
    static __device__ __forceinline__ float log_(float x) { return logf(x); }
    static __device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
    static __device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
};

template <>
struct Num<double> {
    static __device__ __forceinline__ double exp_(double x) { return exp(x); }
    static __device__ __forceinline__ double log_(double x) { return log(x); }
    static __device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }
    static __device__ __forceinline__ double neg_inf() { return __longlong_as_double(0xfff0000000000000LL); }
};

__device__ __forceinline__ double quiet_nan() { return __longlong_as_double(0x7ff8000000000000LL); }

// max that propagates NaN, as NumPy's/CuPy's maximum does (fmax would drop it)
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) {
    return (b > a || b != b) ? b : a;
}

// index i taken modulo n (n > 0), like cupy.take: never reads outside the source
__device__ __forceinline__ i64 wrap_index(i64 i, i64 n) {
    if (i >= 0 && i < n) return i;
    i %= n;
    return i < 0 ? i + n : i;
}

// Sum of `value` over the block in a fixed order (the same bits on every run). blockDim.x is a multiple of 32
// and at most 1024. Every thread gets the result.
__device__ double block_sum(double value) {
    __shared__ double warp_sums[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(FCN_FULL_MASK, value, offset);
    __syncthreads();  // warp_sums may still be read by an earlier call
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    double total = 0.0;
    for (int w = 0; w < warps; ++w) total += warp_sums[w];
    return total;
}

// Writes this block's partial sum; the last block to finish adds all partials[0..count) in order, stores
// total * scale into *out (cast to T) and resets *counter for the next launch. `finalize` = 0 leaves the
// partials for a later launch (several launches of one multi-tensor sum).
template <typename T>
__device__ void finish_sum(double block_total, double* partials, i64 slot, i64 count, unsigned int* counter,
                           int finalize, double scale, T* out) {
    __shared__ bool is_last;
    if (threadIdx.x == 0) {
        partials[slot] = block_total;
        is_last = false;
        if (finalize) {
            __threadfence();  // make the partial visible to the block that finishes
            const unsigned int done = atomicAdd(counter, 1u);
            is_last = (done == gridDim.x - 1);
        }
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const volatile double* p = partials;
    double mine = 0.0;
    for (i64 k = threadIdx.x; k < count; k += blockDim.x) mine += p[k];
    const double total = block_sum(mine);
    if (threadIdx.x == 0) {
        *out = (T)(total * scale);
        *counter = 0u;
    }
}

// -- batch gather (+ optional flip / crop of images) -------------------------------------------------------

// dst[r, :] = src[idx[r] mod n_src, :] for rows of `row_units` units of type U (a 1-16 byte word: the Python
// side picks the widest word that the row size and the pointers' alignment allow). Optionally the labels of
// the same rows in the same pass: lab_bytes bytes per label.
template <typename U>
__device__ void gather_rows(const U* __restrict__ src, i64 n_src, i64 row_units, const i64* __restrict__ idx,
                            i64 n_out, U* __restrict__ dst, const unsigned char* __restrict__ lab_src,
                            unsigned char* __restrict__ lab_dst, int lab_bytes) {
    for (i64 r = blockIdx.y; r < n_out; r += gridDim.y) {
        const i64 s = wrap_index(idx[r], n_src);
        const U* from = src + s * row_units;
        U* to = dst + r * row_units;
        for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < row_units; j += (i64)gridDim.x * blockDim.x)
            to[j] = from[j];
        if (lab_dst != nullptr && blockIdx.x == 0 && (int)threadIdx.x < lab_bytes)
            lab_dst[r * lab_bytes + threadIdx.x] = lab_src[s * lab_bytes + threadIdx.x];
    }
}

// Images (N, C, H, W): out[r, c, i, j] = src[s, c, i + dy, (flip ? W - 1 - j : j) + dx], zero outside the
// image, with s = idx[r], flip = flip[r] != 0, (dy, dx) = shift[r]: a random crop with zero padding followed
// by a horizontal flip (torchvision's RandomCrop(size, padding=p) then RandomHorizontalFlip), where
// (dy, dx) = crop offset - p. `flip` and `shift` may be null (no flip / no shift).
template <typename T>
__device__ void gather_augment(const T* __restrict__ src, i64 n_src, int channels, int height, int width,
                               const i64* __restrict__ idx, i64 n_out, T* __restrict__ dst,
                               const unsigned char* __restrict__ flip, const int* __restrict__ shift,
                               const unsigned char* __restrict__ lab_src, unsigned char* __restrict__ lab_dst,
                               int lab_bytes) {
    const i64 plane = (i64)height * width;
    const i64 row = plane * channels;
    for (i64 r = blockIdx.y; r < n_out; r += gridDim.y) {
        const i64 s = wrap_index(idx[r], n_src);
        const bool f = flip != nullptr && flip[r] != 0;
        const int dy = shift != nullptr ? shift[2 * r] : 0;
        const int dx = shift != nullptr ? shift[2 * r + 1] : 0;
        const T* from = src + s * row;
        T* to = dst + r * row;
        for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < row; e += (i64)gridDim.x * blockDim.x) {
            const i64 c = e / plane;
            const i64 rem = e - c * plane;
            const int i = (int)(rem / width);
            const int j = (int)(rem - (i64)i * width);
            const int si = i + dy;
            const int sj = (f ? width - 1 - j : j) + dx;
            const bool inside = si >= 0 && si < height && sj >= 0 && sj < width;
            to[e] = inside ? from[c * plane + (i64)si * width + sj] : T(0);
        }
        if (lab_dst != nullptr && blockIdx.x == 0 && (int)threadIdx.x < lab_bytes)
            lab_dst[r * lab_bytes + threadIdx.x] = lab_src[s * lab_bytes + threadIdx.x];
    }
}

#define FCN_GATHER_ROWS(NAME, U)                                                                                \
    extern "C" __global__ void NAME(const U* src, i64 n_src, i64 row_units, const i64* idx, i64 n_out, U* dst,  \
                                    const unsigned char* lab_src, unsigned char* lab_dst, int lab_bytes) {      \
        gather_rows<U>(src, n_src, row_units, idx, n_out, dst, lab_src, lab_dst, lab_bytes);                    \
    }
FCN_GATHER_ROWS(fcn_gather_rows_b16, uint4)
FCN_GATHER_ROWS(fcn_gather_rows_b8, u64)
FCN_GATHER_ROWS(fcn_gather_rows_b4, unsigned int)
FCN_GATHER_ROWS(fcn_gather_rows_b2, unsigned short)
FCN_GATHER_ROWS(fcn_gather_rows_b1, unsigned char)

#define FCN_GATHER_AUGMENT(NAME, T)                                                                             \
    extern "C" __global__ void NAME(const T* src, i64 n_src, int channels, int height, int width,               \
                                    const i64* idx, i64 n_out, T* dst, const unsigned char* flip,              \
                                    const int* shift, const unsigned char* lab_src, unsigned char* lab_dst,     \
                                    int lab_bytes) {                                                            \
        gather_augment<T>(src, n_src, channels, height, width, idx, n_out, dst, flip, shift, lab_src, lab_dst,  \
                          lab_bytes);                                                                           \
    }
FCN_GATHER_AUGMENT(fcn_gather_augment_f32, float)
FCN_GATHER_AUGMENT(fcn_gather_augment_f64, double)

// -- bias + ReLU forward, ReLU backward (in place) ---------------------------------------------------------

// h[r, j] = max(h[r, j] + b[j], 0) in place, h (rows, cols) C-contiguous. NaN stays NaN, as in xp.maximum.
template <typename T>
__device__ void bias_relu(T* __restrict__ h, const T* __restrict__ b, i64 rows, i64 cols) {
    for (i64 r = blockIdx.y; r < rows; r += gridDim.y) {
        T* hr = h + r * cols;
        for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += (i64)gridDim.x * blockDim.x) {
            const T v = hr[j] + b[j];
            hr[j] = v < T(0) ? T(0) : v;
        }
    }
}

// dout[i] *= (y[i] > 0), in place; y is the ReLU's output. A multiply (not a select), as the reference does,
// so a NaN in dout where y <= 0 stays NaN.
template <typename T>
__device__ void relu_backward(T* __restrict__ dout, const T* __restrict__ y, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        dout[i] = dout[i] * (y[i] > T(0) ? T(1) : T(0));
}

#define FCN_ELEMENTWISE(SFX, T)                                                                                 \
    extern "C" __global__ void fcn_bias_relu_##SFX(T* h, const T* b, i64 rows, i64 cols) {                      \
        bias_relu<T>(h, b, rows, cols);                                                                         \
    }                                                                                                           \
    extern "C" __global__ void fcn_relu_backward_##SFX(T* dout, const T* y, i64 n) { relu_backward<T>(dout, y, n); }
FCN_ELEMENTWISE(f32, float)
FCN_ELEMENTWISE(f64, double)

// -- softmax + cross-entropy + gradient, one pass ----------------------------------------------------------

// One warp per row of scores (n, c): row max, sum of exp, loss term and dscores = (softmax - onehot) / n.
// The mean loss is reduced on the device (finish_sum) into *loss. A label outside [0, c) gives a NaN loss
// (no out-of-bounds read), so the training loop's divergence check reports it.
template <typename T, typename L>
__device__ void softmax_xent(const T* __restrict__ scores, const L* __restrict__ y, i64 n, int c,
                             T* __restrict__ dscores, T* __restrict__ loss, double* partials,
                             unsigned int* counter) {
    const int lane = threadIdx.x & 31;
    const i64 warps_per_block = blockDim.x >> 5;
    const i64 first = (i64)blockIdx.x * warps_per_block + (threadIdx.x >> 5);
    const T tn = (T)n;
    double acc = 0.0;  // lane 0: this warp's sum of row losses
    for (i64 r = first; r < n; r += (i64)gridDim.x * warps_per_block) {
        const T* row = scores + r * c;
        T m = Num<T>::neg_inf();
        for (int j = lane; j < c; j += 32) m = nan_max(m, row[j]);
        for (int offset = 16; offset > 0; offset >>= 1) m = nan_max(m, __shfl_xor_sync(FCN_FULL_MASK, m, offset));
        T s = T(0);
        for (int j = lane; j < c; j += 32) s += Num<T>::exp_(row[j] - m);
        for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(FCN_FULL_MASK, s, offset);
        const i64 label = (i64)y[r];
        const bool valid = label >= 0 && label < c;
        T* drow = dscores + r * c;
        for (int j = lane; j < c; j += 32) {
            T p = Num<T>::exp_(row[j] - m) / s;
            if (valid && j == label) p -= T(1);
            drow[j] = p / tn;
        }
        if (lane == 0) acc += valid ? (double)(Num<T>::log_(s) - (row[label] - m)) : quiet_nan();
    }
    const double block_total = block_sum(lane == 0 ? acc : 0.0);
    finish_sum<T>(block_total, partials, blockIdx.x, gridDim.x, counter, 1, 1.0 / (double)n, loss);
}

#define FCN_SOFTMAX_XENT(SFX, T, LSFX, L)                                                                       \
    extern "C" __global__ void fcn_softmax_xent_##SFX##_##LSFX(const T* scores, const L* y, i64 n, int c,        \
                                                               T* dscores, T* loss, double* partials,           \
                                                               unsigned int* counter) {                         \
        softmax_xent<T, L>(scores, y, n, c, dscores, loss, partials, counter);                                  \
    }
FCN_SOFTMAX_XENT(f32, float, i32, int)
FCN_SOFTMAX_XENT(f32, float, i64, long long)
FCN_SOFTMAX_XENT(f64, double, i32, int)
FCN_SOFTMAX_XENT(f64, double, i64, long long)

// -- multi-tensor launches: sum of squares, update rules ---------------------------------------------------

// Up to FCN_MT_MAX tensors of one dtype, passed by value (no table to upload, nothing to synchronise).
// ptr[0] = the tensors (weights), ptr[1] = their gradients, ptr[2], ptr[3] = the rule's state arrays.
// Tensor i is covered by blocks [block_start[i], block_start[i + 1]), FCN_CHUNK elements per block.
struct TensorList {
    i64 ptr[4][FCN_MT_MAX];
    i64 size[FCN_MT_MAX];
    i64 block_start[FCN_MT_MAX + 1];
    i64 count;
};

// (tensor, first element, end) of this block; the same for every thread of the block (no divergence)
__device__ __forceinline__ int find_tensor(const TensorList& list, i64 block, i64* begin, i64* end) {
    int i = 0;
    while (i + 1 < list.count && list.block_start[i + 1] <= block) ++i;
    *begin = (block - list.block_start[i]) * (i64)FCN_CHUNK;
    const i64 stop = *begin + (i64)FCN_CHUNK;
    *end = stop < list.size[i] ? stop : list.size[i];
    return i;
}

// sum_i sum(x_i ** 2) of the list's tensors, accumulated in double. Several launches (more than FCN_MT_MAX
// tensors) write consecutive partial slots from `slot0`; the one with finalize = 1 adds all `count` slots.
template <typename T>
__device__ void sum_squares(const TensorList& list, double* partials, i64 slot0, i64 count,
                            unsigned int* counter, int finalize, T* out) {
    i64 begin, end;
    const int i = find_tensor(list, blockIdx.x, &begin, &end);
    const T* x = reinterpret_cast<const T*>(list.ptr[0][i]);
    double acc = 0.0;
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x) {
        const double v = (double)x[k];
        acc += v * v;
    }
    const double block_total = block_sum(acc);
    finish_sum<T>(block_total, partials, slot0 + blockIdx.x, count, counter, finalize, 1.0, out);
}

#define FCN_SUM_SQUARES(SFX, T)                                                                                 \
    extern "C" __global__ void fcn_sum_squares_##SFX(const __grid_constant__ TensorList list, double* partials,  \
                                                     i64 slot0, i64 count, unsigned int* counter, int finalize,  \
                                                     T* out) {                                                  \
        sum_squares<T>(list, partials, slot0, count, counter, finalize, out);                                   \
    }
FCN_SUM_SQUARES(f32, float)
FCN_SUM_SQUARES(f64, double)

// Update rules, the same arithmetic as fcn.ops.Ops (hyperparameters rounded to T first, as NumPy/CuPy do
// with Python floats). `hyper`, when not null, is a device array [learning_rate, t, 1 - beta1**t,
// 1 - beta2**t] read instead of the scalar arguments: a captured CUDA graph then picks up a new learning
// rate or step count without being captured again.
enum Rule { SGD = 0, SGD_MOMENTUM = 1, RMSPROP = 2, ADAM = 3 };

template <typename T, int RULE>
__device__ void update(const TensorList& list, double learning_rate, double a, double b, double epsilon,
                       double weight_decay, double bias1, double bias2, const double* hyper) {
    if (hyper != nullptr) {
        learning_rate = hyper[0];
        bias1 = hyper[2];
        bias2 = hyper[3];
    }
    i64 begin, end;
    const int i = find_tensor(list, blockIdx.x, &begin, &end);
    T* w = reinterpret_cast<T*>(list.ptr[0][i]);
    const T* dw = reinterpret_cast<const T*>(list.ptr[1][i]);
    T* s1 = reinterpret_cast<T*>(list.ptr[2][i]);
    T* s2 = reinterpret_cast<T*>(list.ptr[3][i]);
    const T lr = (T)learning_rate;
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x) {
        const T g = dw[k];
        if (RULE == SGD) {
            w[k] -= lr * g;  // w -= lr * dw
        } else if (RULE == SGD_MOMENTUM) {
            const T v = s1[k] * (T)a - lr * g;  // v = mu * v - lr * dw; w += v
            s1[k] = v;
            w[k] += v;
        } else if (RULE == RMSPROP) {
            const T c = s1[k] * (T)a + (T)(1.0 - a) * (g * g);  // c = rho * c + (1 - rho) * dw**2
            s1[k] = c;
            w[k] -= lr * g / (Num<T>::sqrt_(c) + (T)epsilon);
        } else {  // ADAM (AdamW when weight_decay > 0)
            T wk = w[k];
            if (weight_decay != 0.0) wk *= (T)(1.0 - learning_rate * weight_decay);
            const T m = s1[k] * (T)a + (T)(1.0 - a) * g;
            const T v = s2[k] * (T)b + (T)(1.0 - b) * (g * g);
            s1[k] = m;
            s2[k] = v;
            const T m_hat = m / (T)bias1;
            const T v_hat = v / (T)bias2;
            w[k] = wk - lr * m_hat / (Num<T>::sqrt_(v_hat) + (T)epsilon);
        }
    }
}

#define FCN_UPDATE(RULE_NAME, RULE, SFX, T)                                                                     \
    extern "C" __global__ void fcn_update_##RULE_NAME##_##SFX(const __grid_constant__ TensorList list,          \
                                                              double learning_rate, double a, double b,         \
                                                              double epsilon, double weight_decay,              \
                                                              double bias1, double bias2, const double* hyper) { \
        update<T, RULE>(list, learning_rate, a, b, epsilon, weight_decay, bias1, bias2, hyper);                  \
    }
FCN_UPDATE(sgd, SGD, f32, float)
FCN_UPDATE(sgd, SGD, f64, double)
FCN_UPDATE(sgd_momentum, SGD_MOMENTUM, f32, float)
FCN_UPDATE(sgd_momentum, SGD_MOMENTUM, f64, double)
FCN_UPDATE(rmsprop, RMSPROP, f32, float)
FCN_UPDATE(rmsprop, RMSPROP, f64, double)
FCN_UPDATE(adam, ADAM, f32, float)
FCN_UPDATE(adam, ADAM, f64, double)

// One thread: the step count in hyper[1] goes up by one and the bias corrections follow (Adam in a graph).
extern "C" __global__ void fcn_adam_advance(double* hyper, double beta1, double beta2) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const double t = hyper[1] + 1.0;
        hyper[1] = t;
        hyper[2] = 1.0 - pow(beta1, t);
        hyper[3] = 1.0 - pow(beta2, t);
    }
}

// -- diagnostics -------------------------------------------------------------------------------------------

// Holds the stream until the host writes a non-zero int into `flag` (mapped pinned host memory) or
// `timeout_ns` pass; writes 1 into *timed_out (also host memory) on a timeout. While it runs, any host call
// that waits for the device blocks: fcn.ops.cuda.host_waits uses it to prove that a training step queues
// its work without synchronising.
extern "C" __global__ void fcn_hold_stream(const volatile int* flag, i64 timeout_ns, volatile int* timed_out) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    u64 start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    while (*flag == 0) {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if ((i64)(now - start) > timeout_ns) {
            *timed_out = 1;
            break;
        }
        __nanosleep(1000);
    }
}
