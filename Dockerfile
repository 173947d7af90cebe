# Warmline as one image: the wheel in a virtual environment, the npm packages the views
# serve, `warmline serve` as a non-root user. compose.yaml runs it beside Redis and
# PostgreSQL; README's "Containers" section says how. CI lints this file (hadolint) but
# neither builds nor runs it.

# (a) The browser packages the views serve from node_modules/: the locked versions only.
FROM node:22.12.0-bookworm-slim AS assets
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the packages are served as files, nothing is built. The build
# fails here if a file the views serve (console/web/views.py) is missing.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && test -f node_modules/@twilio/voice-sdk/dist/twilio.min.js \
    && test -f node_modules/uplot/dist/uPlot.esm.js \
    && test -f node_modules/uplot/dist/uPlot.min.css \
    && test -f node_modules/libphonenumber-js/bundle/libphonenumber-min.js

# (b) The Python dependencies from the hashed lock, then Warmline's own wheel, built with
# the locked build backend (hatchling) and installed without resolving anything more.
FROM python:3.11.13-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY warmline ./warmline
COPY console ./console
COPY webhooks ./webhooks
COPY simulator ./simulator
COPY static ./static
COPY templates ./templates
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-cache-dir --no-deps /tmp/wheels/warmline-*.whl

# (c) The runtime: the virtual environment and node_modules, nothing to build with.
FROM python:3.11.13-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A home directory, so that a run without REDIS_URL/DATABASE_URL (the embedded servers)
# has somewhere to write.
RUN groupadd --system --gid 10001 warmline \
    && useradd --system --uid 10001 --gid warmline --no-log-init --create-home \
        --shell /usr/sbin/nologin warmline
COPY --from=builder /opt/venv /opt/venv
# The views find node_modules/ in the working directory; root owns it, read-only to the app.
WORKDIR /app
COPY --from=assets /app/node_modules ./node_modules
# By number, so that a runtime that insists on a non-root user can verify it.
USER 10001:10001
EXPOSE 5000
# /healthz answers 503 when Redis does not; urlopen raises on it. No curl in the slim image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('PORT', '').strip() or 5000), timeout=4)"]
CMD ["warmline", "serve"]
