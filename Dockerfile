# The redquorum proxy. `docker compose up` builds it; on its own:
#   docker build -t redquorum .
#   docker run -p 6379:6379 -p 9379:9379 \
#     -e REDQUORUM_REPLICAS=r1=redis1:6379,r2=redis2:6379,r3=redis3:6379 redquorum
# The image holds the proxy only (`redquorum serve`); `redquorum up` needs a local
# redis-server and is meant for a workstation, not a container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY replicas ./replicas
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin redquorum

WORKDIR /
USER redquorum

# Inside a container the proxy must listen on all interfaces; flags override these.
ENV REDQUORUM_LISTEN=0.0.0.0:6379 \
    REDQUORUM_METRICS_LISTEN=0.0.0.0:9379
EXPOSE 6379 9379

ENTRYPOINT ["redquorum"]
CMD ["serve"]
