#!/usr/bin/env bash
# Builds the cfn container image with podman from ./Dockerfile, then checks the image's file system.
# Usage: bash scripts/build-image.sh [--tag NAME] [--no-check]     (as root; installs podman and debootstrap if absent)
#
# Two paths, chosen by whether the .NET base images can be pulled:
#  - registry: `podman build` with the Dockerfile's defaults (SDK stage, then the Debian ASP.NET runtime stage).
#  - local (no registry reachable, as on the build machines of this project): a Debian base is made with debootstrap,
#    with the runbook's packages and the cfn user, and the ASP.NET runtime of this machine's .NET SDK
#    (dotnet/shared/Microsoft.NETCore.App and Microsoft.AspNetCore.App, host/fxr and the dotnet muxer) is copied into
#    it; cfn is published here with `dotnet publish` (framework-dependent, the runtime comes from the base), and
#    podman builds the Dockerfile's `prebuilt` and `prepared` stages, which only copy files. A self-contained publish
#    needs the runtime packs from NuGet, and would duplicate the runtime in every image; the SDK's own runtime is the
#    one the tests ran on.
# The check: running containers may not work on the machine (podman's runtime cannot set rlimits in some sandboxes), so
# the image's file system is exported and run under chroot in namespaces of its own, as user 10001: the runbook's tools
# answer, `cfn --version` prints, and `cfn up` against a throwaway redis-server serves /health/ready, prints its dump on
# SIGQUIT and exits 0 on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TAG=localhost/cfn:latest
CHECK=1
while (($#)); do
  case $1 in
    --tag) TAG=$2; shift 2 ;;
    --no-check) CHECK=0; shift ;;
    *) echo "usage: $0 [--tag NAME] [--no-check]" >&2; exit 2 ;;
  esac
done
WORK=$ROOT/.artifacts/image
mkdir -p "$WORK"
started=$(date +%s)
say() { echo "[build-image $(($(date +%s) - started))s] $*"; }

need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v redis-server >/dev/null || need+=(redis-server)
if ((${#need[@]})); then
  say "installing: ${need[*]}"
  [[ $(id -u) -eq 0 ]] || { echo "need root to install ${need[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The Dockerfile's defaults, and its one list of the runbook's packages.
arg() { sed -n "s/^ARG $1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" Dockerfile | head -n 1; }
SDK_IMAGE=$(arg SDK_IMAGE); RUNTIME_IMAGE=$(arg RUNTIME_IMAGE); PACKAGES=$(arg RUNBOOK_PACKAGES)
[[ -n $SDK_IMAGE && -n $RUNTIME_IMAGE && -n $PACKAGES ]] || { echo "Dockerfile: SDK_IMAGE, RUNTIME_IMAGE or RUNBOOK_PACKAGES not found" >&2; exit 1; }

if timeout 60 podman pull -q "$SDK_IMAGE" >/dev/null 2>&1 && timeout 60 podman pull -q "$RUNTIME_IMAGE" >/dev/null 2>&1; then
  say "path: registry ($SDK_IMAGE, $RUNTIME_IMAGE)"
  podman build --format docker -t "$TAG" .
else
  say "path: local (cannot pull $RUNTIME_IMAGE: no registry reachable); Debian base made with debootstrap"
  DOTNET_ROOT_HOST=$(dirname "$(readlink -f "$(command -v dotnet)")")
  RUNTIME_VERSION=$(dotnet --list-runtimes | awk '$1 == "Microsoft.AspNetCore.App" {print $2}' | sort -V | tail -n 1)
  [[ -n $RUNTIME_VERSION && -d $DOTNET_ROOT_HOST/shared/Microsoft.NETCore.App/$RUNTIME_VERSION ]] \
    || { echo "no ASP.NET Core runtime beside $(command -v dotnet)" >&2; exit 1; }
  SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  BASE_TAG=localhost/cfn-base:$SUITE-aspnet-$RUNTIME_VERSION
  if podman image exists "$BASE_TAG"; then
    say "base image $BASE_TAG exists; reused"
  else
    ROOTFS=$WORK/rootfs
    rm -rf "$ROOTFS"
    say "debootstrap $SUITE with: $PACKAGES"
    # The .NET runtime's native needs (those of Microsoft's runtime-deps image) and the runbook's packages.
    debootstrap --variant=minbase --include="ca-certificates,libssl3,libicu72,tzdata,$(tr ' ' , <<<"$PACKAGES")" \
      "$SUITE" "$ROOTFS" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
    chroot "$ROOTFS" groupadd --gid 10001 cfn
    chroot "$ROOTFS" useradd --uid 10001 --gid 10001 --home-dir /home/cfn --create-home --shell /usr/sbin/nologin cfn
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
    say "copying the .NET runtime $RUNTIME_VERSION from $DOTNET_ROOT_HOST"
    mkdir -p "$ROOTFS/usr/share/dotnet/shared"
    cp -a "$DOTNET_ROOT_HOST/dotnet" "$DOTNET_ROOT_HOST/host" "$ROOTFS/usr/share/dotnet/"
    for fw in Microsoft.NETCore.App Microsoft.AspNetCore.App; do
      mkdir -p "$ROOTFS/usr/share/dotnet/shared/$fw"
      cp -a "$DOTNET_ROOT_HOST/shared/$fw/$RUNTIME_VERSION" "$ROOTFS/usr/share/dotnet/shared/$fw/"
    done
    ln -sf /usr/share/dotnet/dotnet "$ROOTFS/usr/bin/dotnet"
    # --xattrs keeps ping's and mtr-packet's file capabilities.
    tar --xattrs --xattrs-include='*' -C "$ROOTFS" -c . | podman import - "$BASE_TAG" >/dev/null
    rm -rf "$ROOTFS"
    say "base image $BASE_TAG imported"
  fi
  say "dotnet publish (framework-dependent) and the diagnostic tools"
  rm -rf "$WORK/out"
  dotnet publish src/Cfn/Cfn.csproj -c Release -o "$WORK/out/app" -nologo -v q
  dotnet tool install dotnet-gcdump --tool-path "$WORK/out/tools" >/dev/null
  dotnet tool install dotnet-stack --tool-path "$WORK/out/tools" >/dev/null
  podman build --format docker -t "$TAG" --build-arg RUNTIME_IMAGE="$BASE_TAG" \
    --build-arg APP_FROM=prebuilt --build-arg RUNTIME_FROM=prepared .
fi
say "built $TAG ($(podman image inspect "$TAG" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}'))"
podman image inspect "$TAG" --format 'user={{.Config.User}} entrypoint={{json .Config.Entrypoint}} cmd={{json .Config.Cmd}} stopsignal={{.Config.StopSignal}} healthcheck={{json .Config.Healthcheck.Test}}'

if ((CHECK)); then
  say "checking the image's file system under chroot"
  CHECKDIR=$WORK/check
  rm -rf "$CHECKDIR" && mkdir -p "$CHECKDIR/rootfs"
  cid=$(podman create "$TAG")
  podman export "$cid" | tar -C "$CHECKDIR/rootfs" --xattrs --xattrs-include='*' -x
  podman rm "$cid" >/dev/null
  bash "$ROOT/scripts/check-image-rootfs.sh" "$CHECKDIR/rootfs"
  rm -rf "$CHECKDIR"
fi
say "done in $(($(date +%s) - started)) s"
