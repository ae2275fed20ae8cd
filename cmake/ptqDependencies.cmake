# Finds ptq's two dependencies. Used both by the source tree and by the installed
# ptqConfig.cmake, so the two never disagree.
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.4 NO_MODULE)
find_dependency(xsimd 8.1)
# Debian's xsimd 8.1.0 export lists a plain "xtl" in INTERFACE_LINK_LIBRARIES although
# xsimd does not need xtl and Debian does not ship it with libxsimd-dev: a consumer would
# otherwise link with -lxtl and fail. Provide an empty target of that name when absent.
if(TARGET xsimd AND NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
