# Defines the target fastnplm_lapack: the LAPACK/BLAS the core links for its M x M work.
#
# scipy-openblas: the OpenBLAS build that NumPy and SciPy wheels ship (PyPI package
#   scipy-openblas32): optimised, multithreaded, installable by pip on any machine, and
#   the same library scipy.linalg uses, so the bench compares like with like. Its symbols
#   carry the prefix scipy_. The Python build uses it.
# system: whatever FindLAPACK finds (OpenBLAS, MKL, reference LAPACK), for C++ users who
#   embed the core without Python.
# auto (the default for CMake users): a system LAPACK when FindLAPACK finds one, else
#   scipy-openblas32 when the Python on PATH has it, else a message saying what to install.

set(_fastnplm_lapack_help
    "fastnplm needs LAPACK (dpotrf, dlauum) for its dense M x M work, and none was found. Either\n"
    "  - install a system LAPACK, e.g. Debian/Ubuntu: apt-get install liblapack-dev (or libopenblas-dev),\n"
    "    Fedora: dnf install lapack-devel, macOS: it comes with Accelerate. Then configure again, or\n"
    "  - pip install scipy-openblas32 (the OpenBLAS of the Python build) and configure with\n"
    "    -DFASTNPLM_BLAS=scipy-openblas (add -DPython_EXECUTABLE=/path/to/python if several are installed,\n"
    "    or -DFASTNPLM_OPENBLAS_DIR=<site-packages>/scipy_openblas32), or\n"
    "  - point CMake at a LAPACK it did not find: -DLAPACK_LIBRARIES=/path/to/liblapack.so (and BLAS_LIBRARIES).")

# The scipy_openblas32 package directory through Python, or "" (sets _fastnplm_sob_dir).
function(_fastnplm_find_scipy_openblas required)
  set(_fastnplm_sob_dir "" PARENT_SCOPE)
  if(FASTNPLM_OPENBLAS_DIR)
    set(_fastnplm_sob_dir "${FASTNPLM_OPENBLAS_DIR}" PARENT_SCOPE)
    return()
  endif()
  if(required)
    find_package(Python COMPONENTS Interpreter REQUIRED)
  else()
    find_package(Python COMPONENTS Interpreter QUIET)
    if(NOT Python_Interpreter_FOUND)
      return()
    endif()
  endif()
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c "import os, scipy_openblas32 as s; print(os.path.dirname(s.__file__))"
    OUTPUT_VARIABLE _dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc ERROR_QUIET)
  if(_rc EQUAL 0)
    set(_fastnplm_sob_dir "${_dir}" PARENT_SCOPE)
  elseif(required)
    message(FATAL_ERROR "FASTNPLM_BLAS=scipy-openblas: cannot import scipy_openblas32 with ${Python_EXECUTABLE}; "
                        "pip install scipy-openblas32, or set FASTNPLM_OPENBLAS_DIR, or use FASTNPLM_BLAS=system")
  endif()
endfunction()

set(_fastnplm_blas "${FASTNPLM_BLAS}")
if(_fastnplm_blas STREQUAL "auto")
  find_package(LAPACK QUIET)
  if(LAPACK_FOUND)
    set(_fastnplm_blas "system")
  else()
    _fastnplm_find_scipy_openblas(OFF)
    if(_fastnplm_sob_dir)
      set(_fastnplm_blas "scipy-openblas")
      message(STATUS "fastnplm: no system LAPACK found; using scipy-openblas32 from ${_fastnplm_sob_dir}")
    else()
      message(FATAL_ERROR ${_fastnplm_lapack_help})
    endif()
  endif()
endif()

if(_fastnplm_blas STREQUAL "scipy-openblas")
  if(NOT _fastnplm_sob_dir)
    _fastnplm_find_scipy_openblas(ON)
  endif()
  set(FASTNPLM_OPENBLAS_DIR "${_fastnplm_sob_dir}" CACHE PATH "" FORCE)
  find_library(FASTNPLM_OPENBLAS_LIBRARY NAMES scipy_openblas PATHS "${FASTNPLM_OPENBLAS_DIR}/lib" NO_DEFAULT_PATH)
  if(NOT FASTNPLM_OPENBLAS_LIBRARY)
    message(FATAL_ERROR "no libscipy_openblas in ${FASTNPLM_OPENBLAS_DIR}/lib: reinstall scipy-openblas32 "
                        "(pip install --force-reinstall scipy-openblas32) or set FASTNPLM_OPENBLAS_DIR")
  endif()
  add_library(fastnplm_lapack INTERFACE)
  target_link_libraries(fastnplm_lapack INTERFACE "${FASTNPLM_OPENBLAS_LIBRARY}")
  set(FASTNPLM_BLAS_PREFIX "scipy_")
  set(FASTNPLM_BLAS_DEFINES FASTNPLM_OPENBLAS_THREADS_API)
  set(FASTNPLM_BLAS_DESCRIPTION "scipy-openblas32 (OpenBLAS)")
elseif(_fastnplm_blas STREQUAL "system")
  if(NOT LAPACK_FOUND)
    find_package(LAPACK QUIET)
  endif()
  if(NOT LAPACK_FOUND)
    message(FATAL_ERROR ${_fastnplm_lapack_help})
  endif()
  add_library(fastnplm_lapack INTERFACE)
  target_link_libraries(fastnplm_lapack INTERFACE LAPACK::LAPACK)
  set(FASTNPLM_BLAS_PREFIX "")
  set(FASTNPLM_BLAS_DEFINES "")
  set(FASTNPLM_BLAS_DESCRIPTION "system LAPACK")
else()
  message(FATAL_ERROR "FASTNPLM_BLAS must be 'auto', 'system' or 'scipy-openblas', not '${FASTNPLM_BLAS}'")
endif()
message(STATUS "fastnplm: dense linear algebra through ${FASTNPLM_BLAS_DESCRIPTION}")
