"""A local page to draw or upload a digit and see how every trained model reads it.

    python -m tools.digit_page serve                  # http://127.0.0.1:8000/
    python -m tools.digit_page serve --port 8080 --seed 2
    curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/predict

The page (tools/digit_page.html, no external resources) sends the drawing or the photo to
POST /predict as the request body. The server makes it an MNIST-style input exactly as
`tools.predict` does (tools/digit_image.py) and answers with that 28x28 input and every model's top
three classes. Each model in params.yaml's `models` is loaded once, at start; one that is not
trained is listed with the command that trains or pulls it. Bad uploads get a 4xx with a message
(415 not an image type, 413 over the size limit or over the pixel budget, 422 not an accepted
format, unreadable, truncated or blank) and the server keeps running. At most one image per core
is decoded at a time: a small file can declare hundreds of megapixels, so the upload limit alone
does not bound what a request costs; the rest wait, and after QUEUE_SECONDS get 503 with
Retry-After.

Why FastAPI on uvicorn: a maintained ASGI stack whose request streaming lets an upload be refused
the moment it passes the size limit, with typed JSON responses and a thread pool for the
CPU-bound work, in a few lines; Flask's development server is documented as not for use beyond a
single developer, and the standard library's http.server has no such safeguards.
"""

import argparse
import asyncio
import base64
import concurrent.futures
import io
import ipaddress
import os
import socket
import threading
from pathlib import Path

import numpy as np

from stages import cli, params
from stages.errors import DataError, ParamsError
from tools import digit_image, predict

PAGE = Path(__file__).with_name("digit_page.html")
DEFAULT_MAX_UPLOAD_MB = 10.0
# How long a request waits for a decoding slot before it is told to come back (503, Retry-After).
QUEUE_SECONDS = 30.0
RETRY_AFTER_SECONDS = 5


class TrainedModels:
    """Every trained model of params.yaml's `models`, loaded once, and the ones not trained with the command
    that makes them. Inference is serialized: Keras models are not documented as safe to call from several
    threads at once, and on a CPU one call already uses every core."""

    def __init__(self, models_dir: Path, model_names: list[str], seed: int | None = None):
        self.models: dict[str, tuple[object, list[str], int]] = {}
        self.missing: dict[str, str] = {}
        for name in model_names:
            try:
                model, class_names, model_seed = predict.load_trained_model(models_dir, name, seed)
            except DataError as error:
                self.missing[name] = str(error).split(": ", 1)[1]
                continue
            self.models[name] = (model, class_names, model_seed)
        if not self.models:
            raise DataError(
                f"{models_dir}: no trained model of {', '.join(model_names)}; run `dvc repro` to train them, "
                "or `dvc pull` to fetch them from the remote"
            )
        self.lock = threading.Lock()

    def answer(self, model_input: np.ndarray) -> list[dict]:
        """Every model's top three classes for one 28x28 input."""
        batch = model_input[np.newaxis, :, :, np.newaxis]
        answers = []
        with self.lock:
            for name, (model, class_names, seed) in self.models.items():
                # The compiled predict step, as `model.predict` in tools.predict uses: 7 times faster than an
                # eager call for one image (1 ms against 7 ms for arch), and the same numbers as the command line.
                probabilities = model.predict_on_batch(batch)[0]
                ranked = predict.top_classes(probabilities, class_names)
                answers.append({
                    "model": name,
                    "seed": seed,
                    "top": [{"class": label, "probability": round(probability, 4)} for label, probability in ranked],
                    "low_confidence": ranked[0][1] < predict.LOW_CONFIDENCE,
                })  # fmt: skip
        return answers

    def read(self, image_bytes: bytes, name: str = "upload") -> dict:
        """The page's answer for one uploaded image: the input the models saw (a PNG data URL) and their answers.

        Raises:
            DataError: the bytes are not a readable image, or no digit stands out in it.
        """
        model_input = digit_image.load(io.BytesIO(image_bytes), name)
        answers = self.answer(model_input)
        return {
            "input_png": input_data_url(model_input),
            "answers": answers,
            "agreement": predict.agreement({answer["model"]: answer["top"][0]["class"] for answer in answers}),
            "missing": self.missing,
        }


def input_data_url(model_input: np.ndarray) -> str:
    from PIL import Image

    picture = digit_image.encoded(Image.fromarray((model_input * 255).round().astype(np.uint8)))
    return "data:image/png;base64," + base64.b64encode(picture).decode()


def create_app(trained: TrainedModels, max_upload_bytes: int, decoding_slots: int | None = None,
               queue_seconds: float = QUEUE_SECONDS):  # fmt: skip
    """The web application: GET / the page, GET /models what is loaded, POST /predict one image as the body.

    At most `decoding_slots` images (default: one per core) are decoded and read at a time.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="Digits, read by every model", docs_url=None, redoc_url=None, openapi_url=None)
    page = PAGE.read_text()
    limit_text = f"{max_upload_bytes / 1e6:g} MB"
    slot_count = decoding_slots or os.cpu_count() or 1
    slots = asyncio.Semaphore(slot_count)
    # Decoding runs in its own threads, as many as the slots: each thread keeps the memory its decodes freed
    # for reuse (glibc's per-thread arenas), so the default pool's 40 threads would each keep a large image's
    # worth (measured: 931 MB after 12 uploads of 62 megapixels with 2 slots in the default pool).
    decoders = concurrent.futures.ThreadPoolExecutor(max_workers=slot_count, thread_name_prefix="decode")

    def refused(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/models")
    def models() -> dict:
        return {
            "loaded": [{"model": name, "seed": seed} for name, (_, _, seed) in trained.models.items()],
            "missing": trained.missing,
            "max_upload_bytes": max_upload_bytes,
        }

    @app.post("/predict")
    async def read_digit(request: Request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            return refused(415, f"Content-Type {content_type or '(none)'!r}: expected an image type such as "
                                "image/png or image/jpeg, with the image as the request body")  # fmt: skip
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes:
            return refused(413, f"upload of {int(declared):,} bytes: expected at most {limit_text}")
        body = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a body without a length is cut off too
            body += chunk
            if len(body) > max_upload_bytes:
                return refused(413, f"upload of more than {max_upload_bytes:,} bytes: expected at most {limit_text}")
        if not body:
            return refused(400, "upload: the request body is empty; expected the image's bytes")
        try:
            await asyncio.wait_for(slots.acquire(), timeout=queue_seconds)
        except TimeoutError:
            response = refused(503, f"busy: every decoding slot was taken for {queue_seconds:g} s; try again")
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        try:
            return await asyncio.get_running_loop().run_in_executor(decoders, trained.read, bytes(body))
        except digit_image.ImageTooLargeError as error:
            return refused(413, str(error))
        except DataError as error:
            return refused(422, str(error))
        finally:
            slots.release()

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on (host, port), bound here rather than by uvicorn so that a taken port is one
    clear line before any model loads, and port 0's pick is known.

    Raises:
        ParamsError: the address cannot be listened on.
    """
    if not 0 <= port <= 65535:
        raise ParamsError(f"--port {port}: expected 0 to 65535")
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ParamsError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error}); "
                          "expected a free port on an address of this machine") from None  # fmt: skip
    listener.listen(128)
    return listener


def warm_up(trained: TrainedModels) -> None:
    """One drawing read end to end before the first visitor, so that their answer is not the slow first one
    (the image libraries load lazily, and each model traces its first call)."""
    from PIL import Image, ImageDraw

    drawing = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(drawing).line([(70, 20), (70, 120)], fill=0, width=12)
    trained.read(digit_image.encoded(drawing), "warm-up drawing")


def serve(arguments: argparse.Namespace) -> None:
    import uvicorn

    if not arguments.max_upload_mb > 0:
        raise ParamsError(f"--max-upload-mb {arguments.max_upload_mb}: expected a size above 0")
    listener = listening_socket(arguments.host, arguments.port)
    cli.import_tensorflow_quietly()  # only now: a taken port is reported without the seconds this takes
    model_names = params.select(params.load_params(), "models")
    trained = TrainedModels(arguments.models_dir, model_names, arguments.seed)
    warm_up(trained)
    if arguments.decoding_slots is not None and arguments.decoding_slots < 1:
        raise ParamsError(f"--decoding-slots {arguments.decoding_slots}: expected at least 1")
    if not arguments.queue_seconds > 0:
        raise ParamsError(f"--queue-seconds {arguments.queue_seconds}: expected a time above 0")
    app = create_app(trained, int(arguments.max_upload_mb * 1e6), arguments.decoding_slots, arguments.queue_seconds)
    loaded = ", ".join(f"{name} (seed {seed})" for name, (_, _, seed) in trained.models.items())
    print(f"digit_page: models loaded: {loaded}", flush=True)
    for name, message in trained.missing.items():
        print(f"digit_page: {name} not loaded: {message}", flush=True)
    if not is_loopback(arguments.host):
        print(f"digit_page: warning: listening on {arguments.host}: other machines can reach this page", flush=True)
    host, port = listener.getsockname()[:2]
    print(f"digit_page: serving http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then raises the Ctrl-C again
        pass
    print("digit_page: stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="start the page's web server")
    serving.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serving.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serving.add_argument("--models-dir", type=Path, default=Path("models"))
    serving.add_argument("--seed", type=int, help="which training seed's models (default: each one's lowest trained)")
    serving.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                         help=f"largest upload accepted, in MB (default {DEFAULT_MAX_UPLOAD_MB:g})")  # fmt: skip
    serving.add_argument("--decoding-slots", type=int,
                         help="images decoded at once; the rest wait (default: one per core)")  # fmt: skip
    serving.add_argument("--queue-seconds", type=float, default=QUEUE_SECONDS,
                         help=f"wait for a decoding slot before a 503 (default {QUEUE_SECONDS:g})")  # fmt: skip
    arguments = parser.parse_args()
    serve(arguments)


if __name__ == "__main__":
    cli.run("digit_page", main)
