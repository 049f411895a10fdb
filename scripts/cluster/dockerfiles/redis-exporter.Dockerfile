# The exporter image the chart names (oliver006/redis_exporter:v1.67.0), made from Debian 12's
# prometheus-redis-exporter (1.45) because no registry answers here and its module is not on the Go proxy.
# Same contract as the upstream image: /redis_exporter, configured by REDIS_* environment variables.
ARG BASE_IMAGE=local/debian-python:bookworm
FROM ${BASE_IMAGE}
COPY redis_exporter /redis_exporter
LABEL org.opencontainers.image.version="1.45.0-debian12" \
      org.opencontainers.image.description="Debian's prometheus-redis-exporter, standing in for oliver006/redis_exporter:v1.67.0"
USER 59000:59000
EXPOSE 9121
ENTRYPOINT ["/redis_exporter"]
