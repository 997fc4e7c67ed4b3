# One image for every Procfile process (web, worker, flower, release).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml ./
COPY gateway ./gateway
COPY workers ./workers
COPY models ./models
RUN pip install --no-cache-dir .
COPY Procfile ./
RUN useradd --system --uid 10001 simpleams
USER simpleams
EXPOSE 8000 5555
