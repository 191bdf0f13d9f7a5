# Container image targets. Included from the main Makefile: `include container/image.mk`.
#
#   make image        build $(IMAGE) offline with podman (installs podman, runc and
#                     debootstrap with apt-get when missing; makes the local Debian base)
#   make image-test   build, then run the image for real and check it (container/image_test.py)
#   make image-base   only the local Debian base image (localhost/imgcls-base:bookworm)
#   make image-clean  remove the image, the local base and container/.cache
#
# Variables: IMAGE             tag to build (default localhost/imgcls:latest)
#            IMAGE_BASE        base image, e.g. python:3.11-slim where a registry is reachable
#                              (default: the local Debian base, built with debootstrap)
#            CALIBRATION_DIR   folder of photos -> INT8 artifacts baked in too
#            RESNET18_WEIGHTS  path of resnet18-f37072fd.pth -> ResNet-18 baked in too

IMAGE ?= localhost/imgcls:latest
IMAGE_BASE ?=
IMAGE_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
IMAGE_PODMAN = CONTAINERS_CONF=$${CONTAINERS_CONF:-container/containers.conf} podman --runtime runc

.PHONY: image image-base image-test image-clean

image-base:
	container/build-base.sh

# The wheelhouse is pinned to .venv, so the project must be installed first.
IMAGE_INSTALL ?= install

image: $(IMAGE_INSTALL)
	IMGCLS_IMAGE="$(IMAGE)" BASE="$(IMAGE_BASE)" \
	CALIBRATION_DIR="$(CALIBRATION_DIR)" RESNET18_WEIGHTS="$(RESNET18_WEIGHTS)" \
	container/build-image.sh

image-test: image
	$(IMAGE_PYTHON) container/image_test.py --image "$(IMAGE)"

image-clean:
	-$(IMAGE_PODMAN) rmi -f "$(IMAGE)" localhost/imgcls-base:bookworm \
	    $$($(IMAGE_PODMAN) images -q --filter reference='localhost/imgcls-cache')
	-$(IMAGE_PODMAN) image prune -f
	rm -rf container/.cache
