"""Backing a run up at every epoch end and resuming it after a kill.

Example:
    >>> restore_backup(keras_resnet.ResNet20(), "runs/none/backup")
    0
"""

import json
import os
import shutil

import keras

from keras_resnet.saving import atomic_path, write_json

BACKUP_STATE = "state.json"


def _backup_files(backup_dir, epoch):
    return os.path.join(backup_dir, f"epoch-{epoch:04d}.weights.h5")


class RunBackup(keras.callbacks.Callback):
    """Back up the run at every epoch end, so a killed run resumes where it was.

    Writes ``backup_dir/epoch-NNNN.weights.h5`` (the model's and the optimizer's variables:
    weights, iterations, learning rate, momentum) and ``state.json`` (the epochs done and the
    state of the ``stateful`` callbacks: ReduceLROnPlateau's patience, the best checkpoint's
    score, the warm-up), each written to a temporary name and renamed, keeping the previous
    epoch's weights as a fallback. Resume with :func:`restore_backup` before ``fit``; the
    callback restores the other callbacks' state when training begins (put it last).

    Example:
        >>> from keras_resnet.train.compile import compile_model
        >>> model = compile_model(keras_resnet.CifarResNet(8, classes=2), "cifar")
        >>> start = restore_backup(model, "runs/r8/backup")  # 0: no backup yet
        >>> x, y = np.zeros((8, 32, 32, 3), "float32"), np.arange(8) % 2
        >>> _ = model.fit(x, y, epochs=2, initial_epoch=start, verbose=0,
        ...               callbacks=[RunBackup("runs/r8/backup", delete_on_end=False)])
        >>> restore_backup(model, "runs/r8/backup")
        2
    """

    def __init__(self, backup_dir, stateful=(), delete_on_end=True):
        super().__init__()
        self.backup_dir = backup_dir
        self.stateful = list(stateful)
        self.delete_on_end = delete_on_end

    def on_train_begin(self, logs=None):
        state = read_backup_state(self.backup_dir)
        if state is None:
            return
        for callback, saved in zip(self.stateful, state.get("callbacks", [])):
            if saved is not None:
                _restore_callback(callback, saved)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        os.makedirs(self.backup_dir, exist_ok=True)
        path = _backup_files(self.backup_dir, done)
        with atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        write_json(os.path.join(self.backup_dir, BACKUP_STATE), {
            "epoch": done,
            "weights": os.path.basename(path),
            "callbacks": [_callback_state(callback) for callback in self.stateful],
        })
        keep = {os.path.basename(path), os.path.basename(_backup_files(self.backup_dir, epoch))}
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in keep:
                os.remove(os.path.join(self.backup_dir, name))

    def on_train_end(self, logs=None):
        if self.delete_on_end:
            shutil.rmtree(self.backup_dir, ignore_errors=True)


def _callback_state(callback):
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
        return {"wait": callback.wait, "cooldown_counter": callback.cooldown_counter,
                "best": float(callback.best)}
    if hasattr(callback, "state"):
        return callback.state()
    return None


def _restore_callback(callback, state):
    if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
        callback.wait, callback.cooldown_counter = state["wait"], state["cooldown_counter"]
        callback.best = state["best"]
    elif hasattr(callback, "restore"):
        callback.restore(state)


def read_backup_state(backup_dir):
    """The ``state.json`` of a backup folder, or None when there is no readable one."""
    path = os.path.join(backup_dir, BACKUP_STATE)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def restore_backup(model, backup_dir):
    """Load the newest good backup of :class:`RunBackup` into ``model``; the epochs it covers.

    A damaged weights file (a kill mid-write, a full disk) is reported in one line and the
    previous epoch's backup is tried; with none usable, training starts from epoch 0.

    Returns:
        The epoch to pass to ``model.fit(initial_epoch=...)`` (0 without a backup).

    Example:
        >>> restore_backup(keras_resnet.ResNet20(), "runs/none/backup")
        0
    """
    state = read_backup_state(backup_dir)
    if state is None:
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for epoch in (state["epoch"], state["epoch"] - 1):
        path = _backup_files(backup_dir, epoch)
        if epoch < 1 or not os.path.exists(path):
            continue
        try:
            model.load_weights(path)
            return epoch
        except Exception as error:  # h5py and Keras raise many kinds for a damaged file
            print(f"Backup {path} is damaged ({type(error).__name__}); trying an earlier one.")
    print(f"No usable backup in {backup_dir}; starting from epoch 0.")
    return 0
