"""What several test modules share: the tiny smoke profile that trains in seconds, and a file-size limit."""

import resource
from contextlib import contextmanager

# the smoke profile shrunk to six synthetic classes and one-epoch, width-2 models (each test changes what it needs)
TINY = {
    "data.synthetic_classes": "6",
    "data.synthetic_train_per_class": "12",
    "data.synthetic_val_per_class": "4",
    "model.width": "2",
    "model.embedding_dim": "8",
    "old_train.epochs": "1",
    "new_train.epochs": "1",
    "old_train.batch_size": "16",
    "new_train.batch_size": "16",
    "protocol.seeds": "0",
}


@contextmanager
def file_size_limit(limit: int):
    """This process may write no file beyond ``limit`` bytes (Python ignores SIGXFSZ, so a write raises EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
