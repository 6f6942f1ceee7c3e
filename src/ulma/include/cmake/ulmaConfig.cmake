# ulma's native scopes: an interface target with the header's directory.
#   cmake -Dulma_DIR="$(python -m ulma.include --cmake-dir)" ...
#   find_package(ulma CONFIG REQUIRED)
#   target_link_libraries(myprog PRIVATE ulma::ulma)
if(NOT TARGET ulma::ulma)
  add_library(ulma::ulma INTERFACE IMPORTED)
  get_filename_component(_ulma_include "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
  set_target_properties(ulma::ulma PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_ulma_include}")
  set(ulma_INCLUDE_DIRS "${_ulma_include}")
  unset(_ulma_include)
endif()
