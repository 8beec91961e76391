# TrialDesk server. The database lives on the volume /var/lib/trialdesk (SQLite by default; set
# TRIALDESK_DATABASE_URL for PostgreSQL). The README's Docker section has the `docker run` line.

# The package as a wheel: code, templates, static files and schemas (its package data).
FROM python:3.11-slim AS build
WORKDIR /build
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TRIALDESK_HOST=0.0.0.0 TRIALDESK_PORT=8000 \
    TRIALDESK_DATABASE_URL=sqlite:////var/lib/trialdesk/trialdesk.db
COPY --from=build /wheels /wheels
# Installed, not editable: the server runs the package in site-packages (compiled to bytecode
# here), with no source tree beside it.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --system --home /var/lib/trialdesk trialdesk \
 && mkdir -p /var/lib/trialdesk && chown trialdesk /var/lib/trialdesk
# What the server reads besides the package, where the settings' defaults look (relative to
# the working folder): the study definition, the SDTM mappings and the alembic migrations.
WORKDIR /srv/trialdesk
COPY forms ./forms
COPY exports ./exports
COPY migrations ./migrations
VOLUME /var/lib/trialdesk
USER trialdesk
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/health' % os.environ['TRIALDESK_PORT'], timeout=4)"
# Migrate, create the first administrator (from TRIALDESK_ADMIN_USERNAME and
# TRIALDESK_ADMIN_PASSWORD, only while no account exists), then serve; `exec` makes the server
# PID 1, so that `docker stop`'s SIGTERM reaches it. With several replicas, run
# `trialdesk db upgrade` and `trialdesk create-admin` once as a release step instead.
CMD ["sh", "-c", "trialdesk db upgrade && trialdesk create-admin && exec trialdesk serve"]
