# core/KeelModule.cmake: keel_module() and the configure-time checks that keep the core's module
# graph honest (explicit source lists, dependencies only on layers declared below). See the top of
# core/CMakeLists.txt for how a module is declared, and core/README.md for the graph itself.

set(KEEL_CORE_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
set_property(GLOBAL PROPERTY KEEL_CORE_MODULES "")

# The dependencies among `deps` that are Keel modules, as module names (keel_storage -> storage).
function(_keel_module_names out)
  set(names)
  foreach(dep IN LISTS ARGN)
    if(dep MATCHES "^keel_(.+)$")
      list(APPEND names "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

# Fails the configure when the folder and the SOURCES list disagree, naming the files and the fix.
function(_keel_check_sources name dir listed)
  set(missing)
  foreach(path IN LISTS listed)
    if(NOT EXISTS "${path}")
      file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${path}")
      list(APPEND missing "${rel}")
    endif()
  endforeach()
  if(missing)
    list(JOIN missing ", " missing)
    message(FATAL_ERROR "keel_module(${name}) in core/CMakeLists.txt lists ${missing}, which does not exist: "
                        "remove it from the SOURCES list (or restore the file).")
  endif()
  # CONFIGURE_DEPENDS: the build re-runs this glob, so a file added later stops the next build too.
  file(GLOB found CONFIGURE_DEPENDS "${dir}/*.cpp")
  list(REMOVE_ITEM found ${listed})
  if(found)
    set(names)
    foreach(path IN LISTS found)
      file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${path}")
      list(APPEND names "${rel}")
    endforeach()
    list(JOIN names ", " names)
    message(FATAL_ERROR "${names} not listed in keel_module(${name} SOURCES ...) in core/CMakeLists.txt, so it "
                        "would not be built: add each file to that list (one line each), or delete it.")
  endif()
endfunction()

# The module's include root: a folder holding only keel/<name>, linked to core/include/keel/<name>.
# Headers stay where they are in the source tree; a target sees keel/<name>/... only when it links
# keel_<name> (directly, or through a PUBLIC dependency).
function(_keel_header_root name out)
  set(root "${CMAKE_CURRENT_BINARY_DIR}/include/${name}")
  set(headers "${CMAKE_CURRENT_SOURCE_DIR}/include/keel/${name}")
  set(link "${root}/keel/${name}")
  if(NOT IS_DIRECTORY "${headers}")
    message(FATAL_ERROR "module ${name} has no public headers: expected the folder core/include/keel/${name}/")
  endif()
  if(IS_SYMLINK "${link}")
    file(READ_SYMLINK "${link}" current)
    if(NOT current STREQUAL headers)
      file(REMOVE "${link}")  # the checkout moved: point at the headers where they are now
    endif()
  endif()
  if(NOT IS_SYMLINK "${link}")
    file(MAKE_DIRECTORY "${root}/keel")
    file(CREATE_LINK "${headers}" "${link}" SYMBOLIC)
  endif()
  set(${out} "${root}" PARENT_SCOPE)
endfunction()

function(keel_module name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;PUBLIC;PRIVATE")
  if(arg_UNPARSED_ARGUMENTS OR NOT arg_SOURCES)
    message(FATAL_ERROR "keel_module(${name} SOURCES <file.cpp>... [PUBLIC <dep>...] [PRIVATE <dep>...]) "
                        "in core/CMakeLists.txt: got '${ARGN}'")
  endif()
  set(dir "${CMAKE_CURRENT_SOURCE_DIR}/${name}")
  list(TRANSFORM arg_SOURCES PREPEND "${dir}/" OUTPUT_VARIABLE sources)
  _keel_check_sources(${name} "${dir}" "${sources}")

  get_property(declared GLOBAL PROPERTY KEEL_CORE_MODULES)
  _keel_module_names(public ${arg_PUBLIC})
  _keel_module_names(private ${arg_PRIVATE})
  foreach(dep IN LISTS public private)
    if(NOT dep IN_LIST declared)
      message(FATAL_ERROR "keel_module(${name}) links keel_${dep}, which is not declared above it in "
                          "core/CMakeLists.txt. A module links only layers below it, so the graph has no "
                          "cycles: declare ${dep} first if it really is below ${name}, or drop the dependency.")
    endif()
  endforeach()

  add_library(keel_${name} STATIC ${sources})
  _keel_header_root(${name} root)
  target_include_directories(keel_${name} PUBLIC "${root}")
  target_compile_options(keel_${name} PRIVATE ${KEEL_CORE_WARNINGS})
  target_link_libraries(keel_${name} PUBLIC ${arg_PUBLIC} PRIVATE ${arg_PRIVATE})

  set_property(GLOBAL APPEND PROPERTY KEEL_CORE_MODULES ${name})
  set_property(GLOBAL PROPERTY KEEL_CORE_${name}_PUBLIC "${public}")
  set_property(GLOBAL PROPERTY KEEL_CORE_${name}_PRIVATE "${private}")
endfunction()

# Every folder of core/ with .cpp files, and every folder of core/include/keel/, is a declared module:
# a new module folder is never silently left out of the build.
function(keel_check_module_folders)
  get_property(declared GLOBAL PROPERTY KEEL_CORE_MODULES)
  file(GLOB sources CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/*/*.cpp")
  file(GLOB header_dirs LIST_DIRECTORIES true "${CMAKE_CURRENT_SOURCE_DIR}/include/keel/*")
  set(unknown)
  foreach(path IN LISTS sources header_dirs)
    file(RELATIVE_PATH rel "${CMAKE_CURRENT_SOURCE_DIR}" "${path}")
    string(REGEX REPLACE "^include/keel/" "" module "${rel}")
    string(REGEX REPLACE "/.*$" "" module "${module}")
    if(NOT module IN_LIST declared)
      list(APPEND unknown "core/${rel}")
    endif()
  endforeach()
  if(unknown)
    list(JOIN unknown ", " unknown)
    message(FATAL_ERROR "${unknown} belong to no module: declare the module with keel_module() in "
                        "core/CMakeLists.txt (its sources and dependencies), or move the files into one.")
  endif()
endfunction()

# The declared graph, for check_layers.cmake (CTest core.layers) to compare the #includes against.
function(keel_write_layers path)
  get_property(modules GLOBAL PROPERTY KEEL_CORE_MODULES)
  set(text "# Generated by core/KeelModule.cmake from core/CMakeLists.txt: the declared module graph.\n")
  string(APPEND text "set(KEEL_CORE_DIR \"${CMAKE_CURRENT_SOURCE_DIR}\")\n")
  string(APPEND text "set(KEEL_CORE_MODULES \"${modules}\")\n")
  foreach(name IN LISTS modules)
    get_property(public GLOBAL PROPERTY KEEL_CORE_${name}_PUBLIC)
    get_property(private GLOBAL PROPERTY KEEL_CORE_${name}_PRIVATE)
    string(APPEND text "set(KEEL_CORE_${name}_PUBLIC \"${public}\")\n")
    string(APPEND text "set(KEEL_CORE_${name}_PRIVATE \"${private}\")\n")
  endforeach()
  file(CONFIGURE OUTPUT "${path}" CONTENT "${text}" @ONLY)  # rewritten only when it changes
endfunction()

# keel_core: an interface target linking every declared module.
function(keel_core_library)
  get_property(modules GLOBAL PROPERTY KEEL_CORE_MODULES)
  list(TRANSFORM modules PREPEND "keel_")
  add_library(keel_core INTERFACE)
  target_link_libraries(keel_core INTERFACE ${modules})
endfunction()
