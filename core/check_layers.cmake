# core/check_layers.cmake: every #include "keel/<module>/..." in the core against the declared graph.
#   cmake -DLAYERS=<build>/core/keel_layers.cmake -P core/check_layers.cmake   (CTest: core.layers)
#
# The per-module include folders already make an undeclared include a compile error, but only for
# what a target can reach at all, PUBLIC dependencies of dependencies included. This check is
# stricter: a module's .cpp files and private headers include only itself and the modules it links
# directly, and its public headers (core/include/keel/<module>/) only itself and its PUBLIC ones.
if(NOT LAYERS OR NOT EXISTS "${LAYERS}")
  message(FATAL_ERROR "check_layers.cmake: pass -DLAYERS=<the keel_layers.cmake written at configure>")
endif()
include("${LAYERS}")

set(violations)
# Appends to `violations` each keel/<module>/ include in the files whose module is not in `allowed`.
function(check_files module allowed what need)
  set(found ${violations})
  foreach(file IN LISTS ARGN)
    file(STRINGS "${file}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]keel/[^/\">]+/")
    foreach(line IN LISTS includes)
      string(REGEX MATCH "keel/([^/\">]+)/[^\">]*" header "${line}")
      set(target "${CMAKE_MATCH_1}")
      if(NOT target IN_LIST allowed)
        file(RELATIVE_PATH rel "${KEEL_CORE_DIR}/.." "${file}")
        list(JOIN allowed ", " allowed_text)
        list(APPEND found "${rel} includes ${header}, but keel_${module} does not link keel_${target} as a ${need} dependency (its ${what} may include: ${allowed_text})")
      endif()
    endforeach()
  endforeach()
  set(violations ${found} PARENT_SCOPE)
endfunction()

foreach(module IN LISTS KEEL_CORE_MODULES)
  set(public_allowed ${module} ${KEEL_CORE_${module}_PUBLIC})
  set(private_allowed ${public_allowed} ${KEEL_CORE_${module}_PRIVATE})
  file(GLOB sources "${KEEL_CORE_DIR}/${module}/*.cpp" "${KEEL_CORE_DIR}/${module}/*.hpp")
  file(GLOB headers "${KEEL_CORE_DIR}/include/keel/${module}/*.hpp")
  if(NOT sources)
    list(APPEND violations "core/${module}/ has no sources: is KEEL_CORE_DIR (${KEEL_CORE_DIR}) right?")
  endif()
  check_files(${module} "${private_allowed}" "sources" "direct (PUBLIC or PRIVATE)" ${sources})
  check_files(${module} "${public_allowed}" "public headers" "PUBLIC" ${headers})
endforeach()

if(violations)
  list(LENGTH violations count)
  list(JOIN violations "\n  " text)
  message(FATAL_ERROR "${count} include(s) break the core's module graph:\n  ${text}\n"
                      "Either declare the dependency in core/CMakeLists.txt, if the layering in core/README.md "
                      "allows it (a module links only layers below it; PUBLIC when its public headers need it), "
                      "or move the code to the module that may use both.")
endif()
list(LENGTH KEEL_CORE_MODULES count)
message(STATUS "core layering: the #includes of ${count} modules match the declared graph")
