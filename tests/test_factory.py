"""`fcn.build_model` (fcn/factory.py): the one place a model name and hidden sizes become a network."""

import numpy as np
import pytest

import fcn


def test_shallow_and_fc_with_their_default_weight_scales():
    shallow = fcn.build_model()
    assert type(shallow) is fcn.ShallowLayerNet and shallow.hidden_dims == [100] and shallow.input_dim == 3072
    assert np.std(shallow.params["W1"]) == pytest.approx(1e-3, rel=0.05)
    fc = fcn.build_model("fc", [64, 32], input_dim=20, num_classes=5, seed=0)
    assert type(fc) is fcn.FullyConnectedNet and fc.hidden_dims == [64, 32] and fc.num_classes == 5
    assert np.std(fc.params["W1"]) == pytest.approx(1e-2, rel=0.1)
    one = fcn.build_model("fc", 50, weight_scale=0.5, input_dim=400)  # an int is one hidden layer
    assert one.hidden_dims == [50] and one.params["W1"].std() == pytest.approx(0.5, rel=0.05)


def test_keyword_arguments_reach_the_constructor():
    net = fcn.build_model("shallow", (16,), reg=0.25, dtype="float32", seed=3, input_dim=12, num_classes=4)
    same = fcn.ShallowLayerNet(12, 16, 4, weight_scale=1e-3, reg=0.25, dtype="float32", seed=3)
    assert net.reg == 0.25 and net.params["W1"].dtype == np.float32
    assert all(np.array_equal(net.params[k], same.params[k]) for k in same.params)
    with pytest.raises(TypeError):
        fcn.build_model("fc", [8], not_an_option=1)


@pytest.mark.parametrize(("args", "match"), [(("shallow", [512, 256]), "one hidden size"), (("cnn",), "unknown model")])
def test_bad_requests_are_value_errors(args, match):
    with pytest.raises(ValueError, match=match):
        fcn.build_model(*args)
