# What the Debian 12 cross toolchains share. The file that includes this one
# sets fibers_triplet (the cross compiler's prefix), fibers_qemu (the
# qemu-user binary that runs the target's programs) and, when it differs
# from the triplet, fibers_multiarch (the target's multiarch directory).
#
# Boost for the target is found through CMAKE_PREFIX_PATH (./build.sh
# unpacks Debian's packages for the target into build/sysroot/<arch>/usr)
# or, when installed through multiarch, in /usr/lib/<multiarch>/cmake.
if(NOT DEFINED fibers_multiarch)
    set(fibers_multiarch ${fibers_triplet})
endif()

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${fibers_triplet}-gcc)
set(CMAKE_CXX_COMPILER ${fibers_triplet}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${fibers_multiarch})
set(CMAKE_FIND_ROOT_PATH /usr/${fibers_triplet})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# ctest runs the target's programs under qemu-user. The dynamic loader and
# the C and C++ runtimes are the cross toolchain's (/usr/<triplet>/lib),
# which the binaries were linked against. LD_LIBRARY_PATH keeps the loader
# from taking libc.so.6 from a multiarch libc6:<arch> listed in the host's
# ld.so.cache instead: the two are different builds of glibc, and a loader
# with another build's libc.so.6 hangs in the first pthread_create. The
# QEMU_* variables are inherited, so that a program a test starts with exec
# (run through binfmt_misc, see build.sh) gets the same set-up.
set(CMAKE_CROSSCOMPILING_EMULATOR
    env QEMU_LD_PREFIX=/usr/${fibers_triplet}
        QEMU_SET_ENV=LD_LIBRARY_PATH=/usr/${fibers_triplet}/lib
        qemu-${fibers_qemu})
