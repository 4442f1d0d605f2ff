# Images of meshtrace-cp and meshtracectl, built by `make image` from the
# static binaries in bin/ (CGO_ENABLED=0): nothing is compiled or pulled here.
#
#   make image                      # meshtrace/meshtrace-cp:dev and meshtrace/meshtracectl:dev
#   docker run --rm meshtrace/meshtrace-cp:dev config global
#
# Both run as the unprivileged user 65532 (no shell, no package manager:
# FROM scratch). meshtrace-cp keeps its state in /data (dataDir ./data is
# relative to the working directory /); mount a volume there.

FROM scratch AS meshtrace-cp
COPY --chown=65532:65532 bin/image-root/ /
COPY bin/meshtrace-cp /usr/local/bin/meshtrace-cp
USER 65532:65532
WORKDIR /
ENV TMPDIR=/tmp
# global: API, KDS, diagnostics; zone: API, xDS, diagnostics
EXPOSE 5681 5685 5680 5682 5678 5692
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/meshtrace-cp"]
CMD ["--help"]

FROM scratch AS meshtracectl
COPY --chown=65532:65532 bin/image-root/tmp /tmp
COPY bin/meshtracectl /usr/local/bin/meshtracectl
USER 65532:65532
ENV HOME=/tmp
ENTRYPOINT ["/usr/local/bin/meshtracectl"]
CMD ["help"]
