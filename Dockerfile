# The cfn image: one image for every role (`cfn serve --role …`), with the tools the runbook runs inside a pod.
# Build: bash scripts/build-image.sh (podman; docs/deployment.md). With a registry that serves the .NET images,
# `podman build --format docker -t cfn .` (or docker build) takes the default path below: SDK stage, then the ASP.NET
# runtime stage. Where no registry is reachable, the script builds the two base images locally (debootstrap) and picks
# the `prebuilt` and `prepared` stages through APP_FROM and RUNTIME_FROM, which run nothing inside a container.

ARG SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0
# A Debian-based ASP.NET runtime (cfn is a web app): curl, redis-cli, ping and mtr need a full distribution, which a
# chiseled or distroless image lacks.
ARG RUNTIME_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0-trixie-slim
ARG APP_FROM=build
ARG RUNTIME_FROM=runtime

# The runbook's steps run these inside pods: curl (every HTTP endpoint), redis-cli (redis-tools), jq, ps and kill
# (procps), ping (iputils-ping), mtr (mtr-tiny), nslookup (dnsutils). scripts/build-image.sh reads this line too.
ARG RUNBOOK_PACKAGES="curl redis-tools jq procps iputils-ping mtr-tiny dnsutils"

FROM ${SDK_IMAGE} AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/Cfn/Cfn.csproj -c Release -o /out/app -nologo \
 && dotnet tool install dotnet-gcdump --tool-path /out/tools \
 && dotnet tool install dotnet-stack --tool-path /out/tools

# What scripts/build-image.sh published on the host (dotnet publish and dotnet tool install into .artifacts/image/out).
FROM scratch AS prebuilt
COPY .artifacts/image/out/ /out/

FROM ${RUNTIME_IMAGE} AS runtime
ARG RUNBOOK_PACKAGES
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ${RUNBOOK_PACKAGES} \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 cfn \
 && useradd --uid 10001 --gid 10001 --home-dir /home/cfn --create-home --shell /usr/sbin/nologin cfn

# A base that already holds the packages and the cfn user (scripts/build-image.sh made it with debootstrap).
FROM ${RUNTIME_IMAGE} AS prepared

FROM ${APP_FROM} AS app

FROM ${RUNTIME_FROM}
COPY --from=app /out/app /app
# dotnet-gcdump and dotnet-stack: the runbook's heap and stack captures (StuckCoordinator, Step 2).
COPY --from=app /out/tools /opt/dotnet-tools
ENV PATH=/app:/opt/dotnet-tools:$PATH \
    DOTNET_ROOT=/usr/share/dotnet \
    HTTP_PORT=8080
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /home/cfn
EXPOSE 8080
# SIGTERM is cfn's graceful stop (waits end, work handed back, keys deleted).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${HTTP_PORT:-8080}/health/live" || exit 1
# Exec form: cfn is PID 1 and gets every signal itself, so `kubectl exec … -- kill -3 1` prints its diagnostic dump.
ENTRYPOINT ["/app/cfn"]
CMD ["serve", "--role", "all"]
