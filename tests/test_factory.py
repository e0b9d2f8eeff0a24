"""`fcn.build_model` and `ModelConfig` (fcn/factory.py): where a model name and hidden sizes become a network."""

import numpy as np
import pytest

import fcn
from fcn.factory import ModelConfig, model_fields


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


def test_a_model_config_builds_the_network_it_describes():
    """Every setting of a ModelConfig reaches the network: dtype for both kinds, dropout and normalization for fc."""
    shallow = ModelConfig(hidden_dims=[16], dtype="float32").build(input_dim=12, num_classes=4, seed=0)
    assert type(shallow) is fcn.ShallowLayerNet and shallow.params["W1"].dtype == np.float32
    fc = ModelConfig(model="fc", hidden_dims=[8, 6], normalization="batchnorm", dropout_keep_ratio=0.5).build(
        input_dim=12, num_classes=4, seed=0
    )
    assert type(fc) is fcn.FullyConnectedNet and fc.hidden_dims == [8, 6]
    assert fc.normalization == "batchnorm" and fc.dropout_keep_ratio == 0.5 and fc.params["W1"].dtype == np.float64


def test_model_config_defaults_are_the_shallow_net_and_lists_are_not_shared():
    a, b = ModelConfig(), ModelConfig()
    assert (a.model, a.hidden_dims, a.weight_scale, a.normalization) == ("shallow", [100], None, None)
    assert (a.dropout_keep_ratio, a.reg, a.dtype, a.backend) == (1.0, 0.0, "float64", "numpy")
    a.hidden_dims.append(50)
    assert b.hidden_dims == [100] and ModelConfig().hidden_dims == [100]


def test_every_model_setting_has_help_and_says_how_a_sweep_draws_it():
    """The command line shows ``help``; a sweep draws exactly the fields with a ``search`` rule."""
    fields = {f.name: f.metadata for f in model_fields()}
    assert all(isinstance(meta["help"], str) and meta["help"] for meta in fields.values())
    searched = {name: meta["search"] for name, meta in fields.items() if meta["search"] is not None}
    assert searched == {"hidden_dims": "hidden", "weight_scale": "log", "normalization": "choice",
                        "dropout_keep_ratio": "linear", "reg": "log"}  # fmt: skip
    assert fields["model"]["choices"] == tuple(fcn.factory.MODELS)


@pytest.mark.parametrize("model", ["shallow", "fc"])
def test_a_weight_scale_given_reaches_either_kind_of_network(model):
    """Through build_model and through a ModelConfig: the first layer's weights have the scale asked for."""
    direct = fcn.build_model(model, [50], weight_scale=0.5, input_dim=400, seed=0)
    configured = ModelConfig(model=model, hidden_dims=[50], weight_scale=0.5).build(input_dim=400, seed=0)
    for net in (direct, configured):
        assert np.std(net.params["W1"]) == pytest.approx(0.5, rel=0.05)
