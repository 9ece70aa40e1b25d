"""Stand-in for TensorFlow, for the HEAR 2021 tools only.

hearvalidator and heareval import tensorflow at module level to support TF models, but
use it for PyTorch models only in `isinstance(model, tf.Module)` and a GPU check. This
module answers those two and nothing else; a real TensorFlow, when installed, comes
first on sys.path and is used instead.
"""


class Module:  # no PyTorch model is an instance of it
    pass


class test:  # noqa: N801 - mirrors tf.test
    @staticmethod
    def is_gpu_available(*args, **kwargs) -> bool:
        import torch
        return torch.cuda.is_available()  # heareval refuses a GPU that torch sees and TF doesn't


def convert_to_tensor(*args, **kwargs):
    raise RuntimeError("stand-in tensorflow: TensorFlow models are not supported here")
