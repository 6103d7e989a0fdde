"""Device resolution: a CUDA device that this torch or machine cannot provide fails at once, naming the setting."""

import pytest
import torch

from hessdistill.core.devices import resolve_device
from hessdistill.core.errors import HessdistillError


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a usable GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_names_the_setting_and_the_fix(device):
    with pytest.raises(HessdistillError) as err:
        resolve_device(device)
    msg = str(err.value)
    assert "use_gpu" in msg and "fix:" in msg
    assert ("CPU-only build" in msg) == (torch.version.cuda is None)


def test_a_bad_device_name_says_which_names_work():
    with pytest.raises(HessdistillError, match="use cpu, cuda, cuda:<index> or auto"):
        resolve_device("gpu0")


def test_a_teacher_on_cuda_without_a_gpu_fails_before_loading(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a usable GPU")
    from hessdistill.teachers import load_teacher

    with pytest.raises(HessdistillError, match="use_gpu"):
        load_teacher("torch:toy_models:morse", device="cuda")
