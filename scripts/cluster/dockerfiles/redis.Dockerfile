# The Redis image the chart names (redis:7.2.7-alpine), made from Debian 12's redis-server package because no
# registry answers here: Redis 7.0.15, not 7.2.7 (the label says so). Same contract as the official image for the
# chart: `redis-server` and `redis-cli` on PATH, runs as any uid (the chart uses 999), data in /data.
ARG BASE_IMAGE=local/debian-python:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && mkdir -p /data && chmod 0777 /data
LABEL org.opencontainers.image.version="7.0.15-debian12" \
      org.opencontainers.image.description="redis-server from Debian 12, standing in for redis:7.2.7-alpine"
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
