# petrel-frr, petrel-bird, petrel-gobgp: a Debian package of a BGP daemon on
# the local Debian base, with the files of testbed/images/<name>/ (the build
# context) in /usr/local/bin and its `entrypoint` starting the daemon.
# testbed/images/build.sh frr|bird|gobgp builds them.
ARG BASE
FROM ${BASE}
ARG PACKAGES
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/entrypoint"]
