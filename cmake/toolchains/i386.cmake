# Debian i386: 32-bit x86, built with i686-linux-gnu-g++ and run under
# qemu-i386. ./build.sh test --arch i386 installs what it needs.
set(CMAKE_SYSTEM_PROCESSOR i686)
set(fibers_triplet i686-linux-gnu)
set(fibers_multiarch i386-linux-gnu)
set(fibers_qemu i386)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
