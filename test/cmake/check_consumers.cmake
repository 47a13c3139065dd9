# Installs the library into a scratch prefix, then builds and runs a
# consumer project against it with find_package(fibers), and once more
# with add_subdirectory. Also configures the whole project as if Boost.Fiber
# were not installed: it is only an anchor for two benchmarks. A cross
# build passes its toolchain file, where Boost is (CMAKE_PREFIX_PATH) and
# the emulator that runs the consumers.
set(toolchain)
if(CMAKE_TOOLCHAIN_FILE)
    set(toolchain -DCMAKE_TOOLCHAIN_FILE=${CMAKE_TOOLCHAIN_FILE})
endif()

function(run)
    execute_process(COMMAND ${ARGV} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT status EQUAL 0)
        message(FATAL_ERROR "failed (${status}): ${ARGV}\n${out}")
    endif()
    set(output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${FIBERS_BUILD_DIR} --prefix ${prefix})
foreach(header fibers/fibers.hpp fibers/fiber.hpp)
    if(NOT EXISTS ${prefix}/include/${header})
        message(FATAL_ERROR "not installed: ${header}")
    endif()
endforeach()

set(consumer ${FIBERS_SOURCE_DIR}/test/cmake/consumer)
run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/by_package -Dfibers_ROOT=${prefix}
    "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}" -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} ${toolchain})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/by_package)
run(${EMULATOR} ${WORK_DIR}/by_package/consumer)

run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/by_subdirectory -DFIBERS_SOURCE_DIR=${FIBERS_SOURCE_DIR}
    "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}" -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} ${toolchain})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/by_subdirectory)
run(${EMULATOR} ${WORK_DIR}/by_subdirectory/consumer)
message(STATUS "find_package and add_subdirectory consumers built and ran")

run(${CMAKE_COMMAND} -S ${FIBERS_SOURCE_DIR} -B ${WORK_DIR}/without_boost_fiber
    -DCMAKE_DISABLE_FIND_PACKAGE_boost_fiber=ON -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
    "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}" ${toolchain})
if(NOT output MATCHES "Boost.Fiber not found[^\n]*perf_hub and perf_sync are skipped")
    message(FATAL_ERROR "configured without Boost.Fiber, but did not say which benchmarks it skips:\n${output}")
endif()
if(EXISTS ${WORK_DIR}/without_boost_fiber/test/perf/CMakeFiles/perf_hub.dir)
    message(FATAL_ERROR "perf_hub is configured without Boost.Fiber")
endif()
message(STATUS "configured without Boost.Fiber")
