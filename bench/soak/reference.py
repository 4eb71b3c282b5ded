"""Runs inside the image under test (`docker run --entrypoint python IMAGE /soak/reference.py`): answers every
good request of the soak in-process, through the same handlers and invoke() the server uses but without HTTP,
concurrency or killed workers. These answers are what the served ones must equal."""

import base64
import json
import sys

from byoc_runtime.handlers import resolve
from byoc_runtime.invocation import invoke
from byoc_runtime.serving_settings import ServingSettings

ATTEMPTS = 3


def main(requests_path: str, answers_path: str) -> int:
    settings = ServingSettings.from_env()
    handlers = resolve(settings)
    model = handlers.model_fn(str(settings.model_dir))
    with open(requests_path) as requests, open(answers_path, "w") as answers:
        for line in requests:
            request = json.loads(line)
            attempts = 0
            while attempts < ATTEMPTS:  # a flaky model gets more chances here, none when served
                attempts += 1
                status, body, content_type = invoke(
                    handlers,
                    model,
                    base64.b64decode(request["body"]),
                    request["content_type"],
                    request["accept"],
                    max_payload_bytes=settings.max_payload_bytes,
                    default_accept=settings.default_accept,
                )
                if status == 200:
                    break
            answer = {
                "status": status,
                "body": base64.b64encode(body).decode(),
                "content_type": content_type,
                "attempts": attempts,
            }
            answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
