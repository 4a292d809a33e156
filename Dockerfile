# The lmaload image, for `lmaload k8s-job` (one pod per shard) or any container host:
#   docker build -t lmaload .
#   docker run --rm lmaload run --mns 20000 --rate 2000
# The Cython extension is built in a first stage with the compiler; the image keeps only the
# virtual environment it was installed into.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/lmaload
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY ext ext
COPY lmaload lmaload
RUN /opt/lmaload/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/lmaload /opt/lmaload
ENV PATH=/opt/lmaload/bin:$PATH PYTHONUNBUFFERED=1
RUN useradd --create-home lmaload
USER lmaload
WORKDIR /home/lmaload
ENTRYPOINT ["lmaload"]
