# Debian arm64: 64-bit ARM, built with aarch64-linux-gnu-g++ and run under
# qemu-aarch64. ./build.sh test --arch arm64 installs what it needs.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(fibers_triplet aarch64-linux-gnu)
set(fibers_qemu aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
