# canopy-svc: the HTTP service, expecting an external PostgreSQL in DATABASE_URL.
#
#   docker build -t canopy-svc .
#   docker run -p 8000:8000 -e DATABASE_URL=postgresql://user:pass@host:5432/db \
#              -e CANOPY_SVC_JWT_SECRET=... -e CANOPY_SVC_DATA_KEY=... canopy-svc
#
# Without DATABASE_URL the server would start its embedded PostgreSQL (pgserver) in
# CANOPY_SVC_DATA_DIR inside the container: fine for a sandbox, never for real data.
# Secrets not given in the environment are made in CANOPY_SVC_DATA_DIR and die with the container;
# a new container would then hold a different data key than the database recorded and refuse to
# start. Pass both, the same on every replica.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CANOPY_SVC_DATA_DIR=/var/lib/canopy-svc

RUN groupadd --system --gid 10001 canopy \
    && useradd --system --uid 10001 --gid canopy --home-dir /var/lib/canopy-svc --no-create-home canopy \
    && install -d -o canopy -g canopy -m 0700 /var/lib/canopy-svc

WORKDIR /app

# README.md is pyproject's `readme`: the build fails without it.
COPY pyproject.toml README.md ./
COPY canopy_svc ./canopy_svc

# A plain install into site-packages: schema.sql ships inside the package (its package-data) and
# /docs's Swagger UI inside swagger-ui-bundle, so nothing is read from /app at run time and /app can
# go. No dev extras; files stay root-owned (read-only to the app user), and pip compiles the bytecode
# now because that user cannot write __pycache__ at run time.
RUN pip install --no-cache-dir --compile . \
    && rm -rf /app/canopy_svc /app/build
WORKDIR /var/lib/canopy-svc

USER canopy

EXPOSE 8000

# /healthz needs no token and no database; slim has no curl, so Python's urllib does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# Schema migration runs at start (under an advisory lock); `canopy-svc migrate` can run it first.
CMD ["canopy-svc", "serve", "--host", "0.0.0.0", "--port", "8000"]
