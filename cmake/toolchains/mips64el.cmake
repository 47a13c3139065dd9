# Debian mips64el: 64-bit little-endian MIPS (n64 ABI), built with
# mips64el-linux-gnuabi64-g++ and run under qemu-mips64el.
# ./build.sh test --arch mips64el installs what it needs.
set(CMAKE_SYSTEM_PROCESSOR mips64)
set(fibers_triplet mips64el-linux-gnuabi64)
set(fibers_qemu mips64el)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
