# Finds the Debian packages tadist is built on and exposes each as an imported
# target. Fails at configure time, with the package to install, when one is missing.
find_package(PkgConfig REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)

function(tadist_require_pkg target module debian_pkg)
  pkg_check_modules(${target}_PC QUIET IMPORTED_TARGET ${module})
  if(NOT ${target}_PC_FOUND)
    message(FATAL_ERROR "tadist needs ${module} (Debian package ${debian_pkg}); run jobs/setup.sh")
  endif()
  add_library(tadist::${target} ALIAS PkgConfig::${target}_PC)
endfunction()

tadist_require_pkg(hdf5 hdf5-openmpi libhdf5-openmpi-dev)
tadist_require_pkg(blas openblas libopenblas-dev)
tadist_require_pkg(libconfig libconfig libconfig-dev)
tadist_require_pkg(cjson libcjson libcjson-dev)
tadist_require_pkg(png libpng libpng-dev)
tadist_require_pkg(xxhash libxxhash libxxhash-dev)
tadist_require_pkg(zlib zlib zlib1g-dev)
tadist_require_pkg(freetype freetype2 libfreetype-dev)
tadist_require_pkg(nlopt nlopt libnlopt-dev)

# The HDF5 found must be the MPI-IO build: task vectors are written collectively.
include(CheckSymbolExists)
set(CMAKE_REQUIRED_INCLUDES ${hdf5_PC_INCLUDE_DIRS} ${MPI_C_INCLUDE_DIRS})
check_symbol_exists(H5_HAVE_PARALLEL "H5pubconf.h" TADIST_HDF5_IS_PARALLEL)
unset(CMAKE_REQUIRED_INCLUDES)
if(NOT TADIST_HDF5_IS_PARALLEL)
  message(FATAL_ERROR "The HDF5 found (${hdf5_PC_INCLUDE_DIRS}) is a serial build; tadist needs "
                      "parallel HDF5: install libhdf5-openmpi-dev (jobs/setup.sh does)")
endif()

# cblas.h must come from OpenBLAS (openblas_set_num_threads, openblas_get_corename).
set(CMAKE_REQUIRED_INCLUDES ${blas_PC_INCLUDE_DIRS})
set(CMAKE_REQUIRED_LIBRARIES PkgConfig::blas_PC)
check_symbol_exists(openblas_get_corename "cblas.h" TADIST_CBLAS_IS_OPENBLAS)
unset(CMAKE_REQUIRED_INCLUDES)
unset(CMAKE_REQUIRED_LIBRARIES)
if(NOT TADIST_CBLAS_IS_OPENBLAS)
  message(FATAL_ERROR "cblas.h in ${blas_PC_INCLUDE_DIRS} is not OpenBLAS's; install libopenblas-dev")
endif()

# oneDNN (Debian's libdnnl-dev, 2.6): the bf16 products of evaluation forwards
# (kernels/mm_bf16.c; eval.precision = bf16). It has no pkg-config file. Its
# Debian build threads with OpenMP (libgomp): mm_bf16.c sets that runtime's
# thread count, so libgomp itself is linked, whichever compiler builds.
find_path(TADIST_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
find_library(TADIST_DNNL_LIBRARY dnnl)
find_library(TADIST_GOMP_LIBRARY NAMES gomp libgomp.so.1)
if(NOT TADIST_DNNL_INCLUDE_DIR OR NOT TADIST_DNNL_LIBRARY)
  message(FATAL_ERROR "tadist needs oneDNN's C API (oneapi/dnnl/dnnl.h, libdnnl; Debian package "
                      "libdnnl-dev); run jobs/setup.sh")
endif()
if(NOT TADIST_GOMP_LIBRARY)
  message(FATAL_ERROR "tadist needs libgomp, the OpenMP runtime Debian's oneDNN runs on (Debian "
                      "package libgomp1); run jobs/setup.sh")
endif()
file(STRINGS ${TADIST_DNNL_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h TADIST_DNNL_MAJOR
     REGEX "#define DNNL_VERSION_MAJOR")
string(REGEX MATCH "[0-9]+" TADIST_DNNL_MAJOR "${TADIST_DNNL_MAJOR}")
if(TADIST_DNNL_MAJOR LESS 2)
  message(FATAL_ERROR "oneDNN ${TADIST_DNNL_MAJOR}.x found in ${TADIST_DNNL_INCLUDE_DIR}; tadist "
                      "needs 2.x (Debian 12's libdnnl-dev 2.6)")
endif()
add_library(tadist::dnnl INTERFACE IMPORTED)
target_include_directories(tadist::dnnl INTERFACE ${TADIST_DNNL_INCLUDE_DIR})
target_link_libraries(tadist::dnnl INTERFACE ${TADIST_DNNL_LIBRARY} ${TADIST_GOMP_LIBRARY})

pkg_check_modules(cmocka_PC QUIET IMPORTED_TARGET cmocka)
if(cmocka_PC_FOUND)
  add_library(tadist::cmocka ALIAS PkgConfig::cmocka_PC)
endif()
