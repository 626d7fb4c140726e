FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir "uv==0.13.9"
COPY pyproject.toml uv.lock README.md ./
COPY bot bot
COPY workers workers
COPY core core
COPY db db
COPY sandbox sandbox
COPY zavhoz zavhoz
COPY alembic alembic
COPY alembic.ini ./
RUN uv sync --frozen --no-dev && useradd --create-home zavhoz \
    && mkdir -p /var/lib/zavhoz && chown zavhoz /var/lib/zavhoz
# The app's files are root's; what it writes (orphans backups, locks) goes here, a volume.
ENV PATH="/app/.venv/bin:$PATH" VAR_DIR=/var/lib/zavhoz
USER zavhoz
