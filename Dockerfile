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
RUN uv sync --frozen --no-dev && useradd --create-home zavhoz
ENV PATH="/app/.venv/bin:$PATH"
USER zavhoz
