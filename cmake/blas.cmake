# Defines the target fastnplm_lapack: the LAPACK/BLAS the core links for its M x M work.
#
# scipy-openblas: the OpenBLAS build that NumPy and SciPy wheels ship (PyPI package
#   scipy-openblas32): optimised, multithreaded, installable by pip on any machine, and
#   the same library scipy.linalg uses, so the bench compares like with like. Its symbols
#   carry the prefix scipy_. The Python build uses it.
# system: whatever FindLAPACK finds (OpenBLAS, MKL, reference LAPACK), for C++ users who
#   embed the core without Python.
if(FASTNPLM_BLAS STREQUAL "scipy-openblas")
  if(NOT FASTNPLM_OPENBLAS_DIR)
    find_package(Python COMPONENTS Interpreter REQUIRED)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c "import os, scipy_openblas32 as s; print(os.path.dirname(s.__file__))"
      OUTPUT_VARIABLE _sob_dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _sob_rc)
    if(NOT _sob_rc EQUAL 0)
      message(FATAL_ERROR "FASTNPLM_BLAS=scipy-openblas: cannot import scipy_openblas32 with ${Python_EXECUTABLE}; "
                          "pip install scipy-openblas32, or set FASTNPLM_OPENBLAS_DIR, or use FASTNPLM_BLAS=system")
    endif()
    set(FASTNPLM_OPENBLAS_DIR "${_sob_dir}" CACHE PATH "" FORCE)
  endif()
  find_library(FASTNPLM_OPENBLAS_LIBRARY NAMES scipy_openblas PATHS "${FASTNPLM_OPENBLAS_DIR}/lib" NO_DEFAULT_PATH REQUIRED)
  add_library(fastnplm_lapack INTERFACE)
  target_link_libraries(fastnplm_lapack INTERFACE "${FASTNPLM_OPENBLAS_LIBRARY}")
  set(FASTNPLM_BLAS_PREFIX "scipy_")
  set(FASTNPLM_BLAS_DEFINES FASTNPLM_OPENBLAS_THREADS_API)
  set(FASTNPLM_BLAS_DESCRIPTION "scipy-openblas32 (OpenBLAS)")
elseif(FASTNPLM_BLAS STREQUAL "system")
  find_package(LAPACK REQUIRED)
  add_library(fastnplm_lapack INTERFACE)
  target_link_libraries(fastnplm_lapack INTERFACE LAPACK::LAPACK)
  set(FASTNPLM_BLAS_PREFIX "")
  set(FASTNPLM_BLAS_DEFINES "")
  set(FASTNPLM_BLAS_DESCRIPTION "system LAPACK")
else()
  message(FATAL_ERROR "FASTNPLM_BLAS must be 'system' or 'scipy-openblas', not '${FASTNPLM_BLAS}'")
endif()
message(STATUS "fastnplm: dense linear algebra through ${FASTNPLM_BLAS_DESCRIPTION}")
