"""The recipes' optimisation against its sources: timm's Lamb and CosineLRScheduler, torch's
LinearLR + CosineAnnealingLR (torchvision's train.py) and torchvision's EMA (an AveragedModel
with use_buffers=True), run in $KERAS_RESNET_TORCH_PYTHON on the same numbers; and the
closed forms they compute, without torch."""

import json
import math
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import torch_python
from keras_resnet import optimizers, recipes
from keras_resnet.train.ema import ModelEMA


def _torch(script, payload):
    """Run ``script`` in the torch interpreter with ``payload`` as JSON on stdin; its JSON."""
    done = subprocess.run([torch_python(), "-c", script], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- LAMB ---------------------------------------------------------------------------------

_TIMM_LAMB = """
import json, sys, torch
from timm.optim import Lamb
p = json.load(sys.stdin)
params = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float32)) for k, v in p["init"].items()}
# timm's param_groups_weight_decay: 1-D params (the bias) in a group without decay
groups = [{"params": [params["kernel"], params["kernel2"]], "weight_decay": p["wd"]},
          {"params": [params["bias"]], "weight_decay": 0.0}]
opt = Lamb(groups, lr=p["lrs"][0])
for lr, grads in zip(p["lrs"], p["grads"]):
    for group in opt.param_groups:
        group["lr"] = lr
    for k, g in grads.items():
        params[k].grad = torch.tensor(g, dtype=torch.float32)
    opt.step()
print(json.dumps({k: v.detach().numpy().tolist() for k, v in params.items()}))
"""


def _lamb_case(steps, scale):
    rng = np.random.default_rng(0)
    shapes = {"kernel": (4, 3), "kernel2": (3, 2), "bias": (3,)}
    init = {k: rng.normal(0, 1, s).astype("float32") for k, s in shapes.items()}
    grads = [{k: (scale * rng.normal(0, 1, s)).astype("float32") for k, s in shapes.items()}
             for _ in range(steps)]
    return init, grads, [0.01, 0.02, 0.005, 0.03][:steps]


def _keras_lamb(init, grads, lrs, weight_decay):
    variables = {k: keras.Variable(v, name=k) for k, v in init.items()}
    optimizer = optimizers.Lamb(lrs[0], weight_decay=weight_decay)
    for lr, step in zip(lrs, grads):
        optimizer.learning_rate = lr
        optimizer.apply_gradients([(step[k], variables[k]) for k in init])
    return {k: v.numpy() for k, v in variables.items()}


@pytest.mark.parametrize("steps, scale", [(1, 1.0), (4, 1.0), (4, 0.05)])  # clipped, and not
def test_lamb_equals_timms_lamb_with_a_bias_out_of_decay(steps, scale):
    init, grads, lrs = _lamb_case(steps, scale)
    expected = _torch(_TIMM_LAMB, {
        "init": {k: v.tolist() for k, v in init.items()}, "wd": 0.02, "lrs": lrs,
        "grads": [{k: g.tolist() for k, g in step.items()} for step in grads]})
    got = _keras_lamb(init, grads, lrs, 0.02)
    for k in init:
        np.testing.assert_allclose(got[k], np.array(expected[k]), rtol=0, atol=1e-6, err_msg=k)
        assert not np.allclose(got[k], init[k])  # it moved


def test_lamb_closed_form_of_one_step_and_the_trust_ratio():
    init, grads, lrs = _lamb_case(1, 1.0)
    got = _keras_lamb(init, grads, lrs, 0.02)
    norm = math.sqrt(sum(float(np.sum(g.astype("float64") ** 2)) for g in grads[0].values()))
    assert norm > 1  # timm's max_grad_norm=1 clips this step
    for k, w in init.items():
        g = grads[0][k].astype("float64") / norm
        # step 1: m = 0.1 g, v = 0.001 g^2, bias-corrected: g / (|g| + 1e-6)
        adam = g / (np.abs(g) + 1e-6)
        if w.ndim > 1:
            update = adam + 0.02 * w
            update *= np.linalg.norm(w) / np.linalg.norm(update)  # the trust ratio
        else:
            update = adam  # out of decay: no trust ratio either (timm's always_adapt=False)
        np.testing.assert_allclose(got[k], w - lrs[0] * update, rtol=0, atol=1e-6, err_msg=k)


@pytest.mark.slow  # 2 s or more of its own
def test_lamb_round_trips_its_config_and_trains_under_xla_and_mirrored():
    optimizer = optimizers.Lamb(recipes.learning_rate_schedule("rsb_a3", 0.008, 40),
                                weight_decay=0.02)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer)))
    again = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert type(again) is optimizers.Lamb
    assert keras.saving.serialize_keras_object(again) == config
    x = np.random.default_rng(0).normal(0, 1, (16, 5)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.BatchNormalization(), keras.layers.Dense(1)])
        model.compile(optimizers.Lamb(0.01, weight_decay=0.02), "mse", jit_compile=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert all(not np.allclose(a, b.numpy()) for a, b in zip(before, model.trainable_variables))


# --- learning-rate schedules ----------------------------------------------------------------

_TORCH_SCHEDULES = """
import json, sys, torch
p = json.load(sys.stdin)
opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=p["peak"])
u = p["updates_per_epoch"]
if p["source"] == "timm":  # timm train.py's scheduler for RSB, --sched-on-updates
    from timm.scheduler import create_scheduler_v2
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=p["epochs"],
                                   warmup_epochs=p["warmup_epochs"], warmup_lr=p["warmup_lr"],
                                   min_lr=0.0, step_on_epochs=False, updates_per_epoch=u)
    lrs = []
    for t in range(p["epochs"] * u + 1):
        sched.step_update(num_updates=t)
        lrs.append(opt.param_groups[0]["lr"])
else:  # torchvision train.py: LinearLR(start_factor=--lr-warmup-decay) then CosineAnnealingLR
    from torch.optim import lr_scheduler as s
    w = p["warmup_epochs"] * u
    sched = s.SequentialLR(opt, [s.LinearLR(opt, start_factor=p["start_factor"], total_iters=w),
                                 s.CosineAnnealingLR(opt, T_max=p["epochs"] * u - w, eta_min=0.0)],
                           milestones=[w])
    lrs = []
    for t in range(p["epochs"] * u + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
print(json.dumps(lrs))
"""


@pytest.mark.parametrize("name, source", [("rsb_a3", "timm"), ("torchvision_v2", "torch")])
def test_learning_rate_at_every_step_equals_the_sources_scheduler(name, source):
    recipe, updates = recipes.get_recipe(name), 2
    peak, total = recipe.base_learning_rate, recipe.epochs * updates
    expected = _torch(_TORCH_SCHEDULES, {
        "source": source, "peak": peak, "epochs": recipe.epochs, "updates_per_epoch": updates,
        "warmup_epochs": int(recipe.warmup_epochs), "warmup_lr": 1e-5,
        "start_factor": recipe.warmup_start_factor})
    schedule = recipes.learning_rate_schedule(recipe, peak, total)
    got = keras.ops.convert_to_numpy(schedule(np.arange(total + 1)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * peak)


def test_schedule_endpoints_in_closed_form():
    timm_style = recipes.learning_rate_schedule("rsb_a3", 0.008, 1000)  # warm-up: 50 steps
    assert float(timm_style(0)) == pytest.approx(1e-5)  # timm's --warmup-lr
    assert float(timm_style(49)) == pytest.approx(1e-5 + (0.008 - 1e-5) * 49 / 50)
    # no warm-up prefix: the cosine already counts the warm-up's 50 steps
    assert float(timm_style(50)) == pytest.approx(0.004 * (1 + math.cos(math.pi * 0.05)))
    assert float(timm_style(1000)) == pytest.approx(0.0, abs=1e-9)
    tv = recipes.learning_rate_schedule("torchvision_v2", 0.5, 1200)  # warm-up: 10 steps
    assert float(tv(0)) == pytest.approx(0.005) and float(tv(10)) == pytest.approx(0.5)
    assert float(tv(605)) == pytest.approx(0.25, abs=1e-6)  # half way through the rest
    assert float(tv(1200)) == pytest.approx(0.0, abs=1e-9)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tv))
    assert again.get_config() == tv.get_config()


# --- EMA --------------------------------------------------------------------------------------

_TORCHVISION_EMA = """
import json, sys, torch
from torch.optim.swa_utils import AveragedModel
p = json.load(sys.stdin)
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
decay = p["decay"]
# torchvision references/classification/utils.py ExponentialMovingAverage
ema = AveragedModel(model, avg_fn=lambda avg, w, n: decay * avg + (1 - decay) * w,
                    use_buffers=True)
for i, w in enumerate(p["weights"]):
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(w["kernel"]).T)
        model[0].bias.copy_(torch.tensor(w["bias"]))
        for k, key in (("weight", "weight"), ("bias", "bias_bn"), ("running_mean", "running_mean"),
                       ("running_var", "running_var")):
            getattr(model[1], k).copy_(torch.tensor(w[key]))
    # torchvision train.py's train_one_epoch, its warm-up counted in steps here
    if i % p["every"] == 0:
        ema.update_parameters(model)
        if i < p["warmup"]:
            ema.n_averaged.fill_(0)
m = ema.module
print(json.dumps({"kernel": m[0].weight.T.tolist(), "bias": m[0].bias.tolist(),
                  "weight": m[1].weight.tolist(), "bias_bn": m[1].bias.tolist(),
                  "running_mean": m[1].running_mean.tolist(), "running_var": m[1].running_var.tolist()}))
"""


def _ema_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.BatchNormalization()])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _weight_sequence(steps):
    rng = np.random.default_rng(3)
    shapes = {"kernel": (4, 3), "bias": (3,), "weight": (3,), "bias_bn": (3,),
              "running_mean": (3,), "running_var": (3,)}
    return [{k: rng.normal(1, 1, s).astype("float32") for k, s in shapes.items()}
            for _ in range(steps)]


def _keras_ema(sequence, decay, every, warmup):
    """Drive ModelEMA as fit would: the step's weights in the model, then its batch end."""
    model = _ema_model()
    dense, norm = model.layers
    ema = ModelEMA(decay, every=every, warmup_steps=warmup)
    ema.set_model(model)
    ema.on_train_begin()
    for i, w in enumerate(sequence):
        dense.kernel.assign(w["kernel"]), dense.bias.assign(w["bias"])
        norm.gamma.assign(w["weight"]), norm.beta.assign(w["bias_bn"])
        norm.moving_mean.assign(w["running_mean"]), norm.moving_variance.assign(w["running_var"])
        model.optimizer.iterations.assign(i + 1)
        ema.on_train_batch_end(i)
    ema.on_epoch_end(0)  # the average into the model
    return {"kernel": dense.kernel.numpy(), "bias": dense.bias.numpy(),
            "weight": norm.gamma.numpy(), "bias_bn": norm.beta.numpy(),
            "running_mean": norm.moving_mean.numpy(), "running_var": norm.moving_variance.numpy()}


def test_ema_with_buffers_equals_torchvisions_exponential_moving_average():
    sequence, decay, every, warmup = _weight_sequence(14), 0.7, 3, 4
    expected = _torch(_TORCHVISION_EMA, {
        "decay": decay, "every": every, "warmup": warmup,
        "weights": [{k: v.tolist() for k, v in w.items()} for w in sequence]})
    got = _keras_ema(sequence, decay, every, warmup)
    for k, value in got.items():
        np.testing.assert_allclose(value, np.array(expected[k]), rtol=0, atol=1e-6, err_msg=k)


def test_ema_recursion_in_closed_form_covers_batch_norm_statistics():
    sequence, decay, every, warmup = _weight_sequence(14), 0.7, 3, 4
    got = _keras_ema(sequence, decay, every, warmup)
    # updates after steps 0, 3, 6, 9, 12; those at 0 and 3 fall in the warm-up and reset the
    # count, so the one after them (6) copies too (torchvision's n_averaged.fill_(0))
    for k in got:
        average = sequence[6][k].astype("float64")
        for i in (6, 9, 12):
            average = decay * average + (1 - decay) * sequence[i][k]
        np.testing.assert_allclose(got[k], average, rtol=1e-6, atol=1e-6, err_msg=k)
    assert not np.allclose(got["running_mean"], sequence[-1]["running_mean"])


def test_ema_decay_is_torchvisions_at_imagenet_length_and_keeps_its_share_of_any_run():
    recipe = recipes.get_recipe("torchvision_v2")
    imagenet_steps = recipe.epochs * recipes.IMAGENET_TRAIN_IMAGES / 1024
    # train.py: 1 - (1 - 0.99998) * world_size * batch_size * model_ema_steps / epochs
    assert recipes.ema_momentum(recipe, imagenet_steps) == pytest.approx(
        1 - (1 - 0.99998) * 1024 * 32 / 600, rel=1e-12)
    for steps in (10_000, 1_000_000):  # the horizon, 1 / (1 - decay) updates of 32 steps
        horizon = 32 / (1 - recipes.ema_momentum(recipe, steps))
        assert horizon / steps == pytest.approx(1 / ((1 - 0.99998) * recipes.IMAGENET_TRAIN_IMAGES))
    assert recipes.ema_momentum(recipe, 100) == 0.0  # shorter than one horizon: torch's min(1, .)
