# One image for every Procfile process (web, worker, relay, beat, flower, release);
# docker-compose.yml picks the command. The default is the gateway.
FROM python:3.11-slim
WORKDIR /app
# No proxy's X-Forwarded-For is trusted unless FORWARDED_ALLOW_IPS names it (README).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 FORWARDED_ALLOW_IPS=""
# Exactly the locked versions, by hash, as `make install` does (docs/dependencies.md);
# this layer changes only when the lock does.
COPY requirements/runtime.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes --only-binary :all: -r requirements/runtime.txt
COPY pyproject.toml ./
COPY gateway ./gateway
COPY workers ./workers
COPY models ./models
COPY observability ./observability
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
COPY Procfile ./
RUN useradd --system --uid 10001 simpleams
USER simpleams
EXPOSE 8000 5555
CMD ["uvicorn", "--factory", "gateway.app:app_from_env", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
