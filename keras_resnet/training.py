"""The paper's training recipes: optimizer, weight decay, loss, metrics and callbacks.

The code lives in ``keras_resnet.train`` (``compile``, ``schedules``, ``callbacks``,
``backup``); this module keeps the names it always had, so ``keras_resnet.training.X`` works
as before. The end-to-end runs are in ``keras_resnet.runs`` and ``keras_resnet.train.flow``.

Example:
    >>> model = keras_resnet.ResNet20()
    >>> _ = compile_model(model, "cifar", global_batch_size=128)
    >>> round(float(model.optimizer.learning_rate), 3)
    0.1
"""

from keras_resnet.recipes import get_recipe  # noqa: F401  (re-exported, as before)
from keras_resnet.train.backup import (  # noqa: F401
    BACKUP_STATE,
    RunBackup,
    read_backup_state,
    restore_backup,
)
from keras_resnet.train.callbacks import (  # noqa: F401
    BestCheckpoint,
    NaNError,
    StopOnNaN,
    StopOnSignal,
    paper_callbacks,
)
from keras_resnet.train.compile import (  # noqa: F401
    apply_weight_decay,
    compile_model,
)
from keras_resnet.train.schedules import (  # noqa: F401
    StepSchedule,
    WarmupUntilError,
    reduce_on_plateau,
)
