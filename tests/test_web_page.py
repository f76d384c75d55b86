"""The server's web page in a real browser: Debian's headless Chromium driven by Selenium.

``keras-resnet serve`` runs in a subprocess on a training run's ``export/`` folder (the suite's
ResNet-8 on digits, with its run.json beside it) to which two more exports are added: a
classifier of RGB photos ("photos", centre-cropped) and a multi-label model exported without
the ``grad_cam`` signature ("tags", as an older export). The page's answers are read from the
DOM and compared with the REST API's own answers for the same files. Screenshots go to the
folder named by ``KERAS_RESNET_SCREENSHOTS`` when it is set. Skipped where /usr/bin/chromium,
/usr/bin/chromedriver or selenium is missing (``apt-get install chromium chromium-driver``).
"""

import base64
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

import keras_resnet
from keras_resnet import export, tasks
from keras_resnet import preprocessing as preprocessing_lib
from keras_resnet.data.sources import digits_arrays

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, "
                              f"{CHROMEDRIVER}): apt-get install chromium chromium-driver"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT_S = 120  # one answer of the page (the first call of a signature traces nothing: loaded)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _photo():
    """An RGB photo: scikit-image's astronaut where scikit-image is installed, else a
    synthetic gradient with shapes."""
    try:
        from skimage import data as skimage_data

        return skimage_data.astronaut()
    except ImportError:
        rows, cols = np.mgrid[0:240, 0:320]
        photo = np.stack([rows * 255 // 239, cols * 255 // 319, (rows + cols) % 256], axis=-1)
        photo[60:180, 100:220] = (250, 200, 40)
        return photo.astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    images, labels, splits = digits_arrays()
    index = splits["test"][0]
    paths = {"digit": folder / f"digit_{labels[index]}.png", "photo": folder / "photo.png",
             "text": folder / "notes.txt", "large": folder / "large.png"}
    paths["digit"].write_bytes(_png(images[index][..., 0]))
    paths["photo"].write_bytes(_png(_photo()))
    paths["text"].write_bytes(b"this is not an image\n")
    # a valid PNG followed by 9 MB: over the server's default max_image_bytes (8 MiB)
    paths["large"].write_bytes(_png(np.zeros((4, 4, 3))) + bytes(9 * 2**20))
    return paths


@pytest.fixture(scope="module")
def web_exports(tiny_run, tmp_path_factory):
    """A copy of the run's export/ folder and run.json, with "photos" and "tags" added."""
    run_dir, _ = tiny_run
    root = tmp_path_factory.mktemp("run")
    shutil.copytree(os.path.join(run_dir, "export"), root / "export")
    shutil.copy(os.path.join(run_dir, "run.json"), root / "run.json")
    names = ["cat", "dog", "bird", "fish", "horse"]
    photos = preprocessing_lib.ImagePreprocessing(
        (32, 32), "shorter_side", 40, mean=preprocessing_lib.IMAGENET_MEAN,
        std=preprocessing_lib.IMAGENET_STD, class_names=names)
    export.export_saved_model(keras_resnet.CifarResNet(8, classes=5), str(root / "export"),
                              model_name="photos", preprocessing=photos)
    tags = keras_resnet.CifarResNet(8, classes=3, classifier_activation="sigmoid")
    tags = tasks.attach(tags, tasks.Task("multilabel", 3, "sigmoid", (0.3, 0.5, 0.7)))
    keras_resnet.save_model(tags, str(root / "tags.keras"))  # as a run saves it, then read back
    with pytest.MonkeyPatch.context() as patch:  # written as before the grad_cam signature
        patch.setattr("keras_resnet.export.saved_model.grad_cam_endpoint", lambda *args: None)
        export.export_saved_model(str(root / "tags.keras"), str(root / "export"), model_name="tags",
                                  preprocessing=preprocessing_lib.ImagePreprocessing(
                                      32, class_names=["indoor", "person", "sky"]))
    return root / "export"


@pytest.fixture(scope="module")
def server(web_exports, tmp_path_factory):
    """``keras-resnet serve EXPORT_DIR --port PORT`` in a subprocess: its URL."""
    port = _free_port()
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(keras_resnet.__file__)))
    env = dict(os.environ, PYTHONPATH=package_root, TF_CPP_MIN_LOG_LEVEL="2")
    command = os.path.join(os.path.dirname(sys.executable), "keras-resnet")
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([command, "serve", str(web_exports), "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            log_tail = log_path.read_text()[-3000:]
            assert process.poll() is None and time.monotonic() < deadline, log_tail
            try:
                if httpx.get(url + "/v1/models/photos", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def browser(server):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no driver download
    try:
        driver.get(server + "/")
        yield driver
    finally:
        driver.quit()


def _api(server, model, path, signature="serving_bytes"):
    """The REST API's answer for a file, as a client other than the page sends it."""
    body = {"signature_name": signature,
            "instances": [{"b64": base64.b64encode(path.read_bytes()).decode("ascii")}]}
    return httpx.post(f"{server}/v1/models/{model}:predict", json=body, timeout=120)


def _upload(browser, model, path):
    """Choose ``model`` in the selector, send ``path``; the page's state when it settles."""
    select = Select(browser.find_element(By.ID, "model"))
    (option,) = [o.text for o in select.options if o.text.startswith(model + " ")]
    select.select_by_visible_text(option)
    sent = browser.execute_script("return Number(document.body.dataset.sent || 0)")
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, WAIT_S).until(lambda driver: driver.execute_script(
        "return Number(document.body.dataset.sent || 0) > arguments[0]"
        " && ['done', 'error'].includes(document.body.dataset.state)", sent))
    return browser.execute_script("return document.body.dataset.state")


def _shown(browser):
    return browser.execute_script(
        "return [...document.querySelectorAll('#classes tr')]"
        ".map((row) => [row.dataset.label, Number(row.dataset.probability)]);")


def _overlay_width(browser):
    return browser.execute_script(
        "const image = document.getElementById('overlay');"
        "return document.getElementById('overlay-figure').hidden ? null"
        " : (image.complete ? image.naturalWidth : 0);")


def _screenshot(browser, name):
    folder = os.environ.get("KERAS_RESNET_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        assert browser.save_screenshot(os.path.join(folder, name))


def test_a_digit_gets_the_apis_top5_and_an_overlay(browser, server, files):
    state = _upload(browser, "resnet8", files["digit"])
    assert state == "done", browser.find_element(By.ID, "error").text
    answer = _api(server, "resnet8", files["digit"]).json()["predictions"][0]
    shown = _shown(browser)
    assert [label for label, _ in shown] == answer["top_k_labels"]
    np.testing.assert_allclose([p for _, p in shown], answer["top_k_scores"], atol=1e-6)
    assert _overlay_width(browser) == 8  # the overlay PNG, at the digit's own 8x8
    card = browser.find_element(By.CSS_SELECTOR, '.card[data-model="resnet8/1"]')
    assert card.is_displayed() and "stage conv4" in card.text
    assert "Test split (the run's run.json)\ntop1" in card.text  # the run's, beside its export
    _screenshot(browser, "web_page_digit.png")


def test_a_photo_gets_the_apis_top5_and_an_overlay_at_its_own_size(browser, server, files):
    assert _upload(browser, "photos", files["photo"]) == "done"
    answer = _api(server, "photos", files["photo"]).json()["predictions"][0]
    shown = _shown(browser)
    assert [label for label, _ in shown] == answer["top_k_labels"]
    np.testing.assert_allclose([p for _, p in shown], answer["top_k_scores"], atol=1e-6)
    width = Image.open(files["photo"]).size[0]
    assert _overlay_width(browser) == width
    grad_cam = _api(server, "photos", files["photo"], "grad_cam").json()["predictions"][0]
    caption = browser.find_element(By.ID, "overlay-caption").text
    assert caption.startswith(f"Grad-CAM of {grad_cam['class_labels']} ")
    assert grad_cam["class_labels"] == answer["top_k_labels"][0]
    _screenshot(browser, "web_page_photo.png")


def test_a_multilabel_model_shows_the_labels_over_their_thresholds_and_no_overlay(
        browser, server, files):
    assert _upload(browser, "tags", files["photo"]) == "done"
    answer = _api(server, "tags", files["photo"]).json()["predictions"][0]
    expected = [label for label in answer["predicted_labels"].split(";") if label]
    assert [label for label, _ in _shown(browser)] == expected
    assert _overlay_width(browser) is None  # an export without the grad_cam signature
    card = browser.find_element(By.CSS_SELECTOR, '.card[data-model="tags/1"]').text
    assert "multi-label classifier, 3 classes" in card and "no grad_cam signature" in card


@pytest.mark.parametrize("name,status", [("text", 400), ("large", 413)])
def test_a_bad_file_shows_the_apis_one_line_error(browser, server, files, name, status):
    assert _upload(browser, "resnet8", files[name]) == "error"
    response = _api(server, "resnet8", files[name])
    assert response.status_code == status
    shown = browser.find_element(By.ID, "error").text
    assert shown == response.json()["error"] and "\n" not in shown
    assert not browser.find_element(By.ID, "result").is_displayed()
    _screenshot(browser, f"web_page_{name}_error.png")
