# Debian armhf: 32-bit ARM (ARMv7, hard float, EHABI exceptions), built with
# arm-linux-gnueabihf-g++ and run under qemu-arm.
# ./build.sh test --arch armhf installs what it needs.
set(CMAKE_SYSTEM_PROCESSOR arm)
set(fibers_triplet arm-linux-gnueabihf)
set(fibers_qemu arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
