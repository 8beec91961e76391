FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TRIALDESK_HOST=0.0.0.0 TRIALDESK_DATABASE_URL=sqlite:////var/lib/trialdesk/trialdesk.db
WORKDIR /srv/trialdesk
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY forms ./forms
RUN pip install --no-cache-dir -e . \
 && useradd --system --home /var/lib/trialdesk trialdesk \
 && mkdir -p /var/lib/trialdesk && chown trialdesk /var/lib/trialdesk
USER trialdesk
EXPOSE 8000
# Migrate, then serve; with several replicas run `trialdesk db upgrade` as a release step instead.
CMD ["sh", "-c", "trialdesk db upgrade && trialdesk serve"]
