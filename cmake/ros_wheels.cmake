# Make the ROS 2 PyPI wheels (ros-* packages, ROS 2 Kilted) usable as a CMake prefix.
#
# The wheels install a normal ROS prefix into the Python environment's root, but (1) nothing puts
# that prefix on CMAKE_PREFIX_PATH / AMENT_PREFIX_PATH, and (2) every interface wheel's
# export_*__rosidl_generator_pyExport.cmake hard-codes the wheel builder's Python and numpy include
# directories (/opt/python/cp3XX-cp3XX/...). This file fixes both for the current interpreter.
#
# It is a no-op on a real ROS install (ROS_DISTRO set, or no ros-ament-cmake-core wheel found), so
# `colcon build` on a robot is untouched. Included from CMakeLists.txt right after project().

if(DEFINED ENV{ROS_DISTRO} AND NOT "$ENV{ROS_DISTRO}" STREQUAL "")
  return()
endif()

# The interpreter: scikit-build-core passes Python3_EXECUTABLE; colcon users may pass it; otherwise
# take the active virtual environment's python3, then any python3 on PATH.
if(NOT Python3_EXECUTABLE)
  if(Python_EXECUTABLE)
    set(_fvs_python "${Python_EXECUTABLE}")
  else()
    find_program(_fvs_python NAMES python3 python
      HINTS "$ENV{VIRTUAL_ENV}/bin" NO_CACHE REQUIRED)
  endif()
  set(Python3_EXECUTABLE "${_fvs_python}" CACHE FILEPATH "Python interpreter" FORCE)
endif()

set(_fvs_probe [=[
import importlib.metadata as md
import pathlib
import sysconfig
try:
    dist = md.distribution('ros-ament-cmake-core')
except md.PackageNotFoundError:
    raise SystemExit(0)
marker = 'share/ament_cmake_core/cmake/ament_cmake_coreConfig.cmake'
for f in dist.files or ():
    if str(f).replace('\\', '/').endswith(marker):
        prefix = pathlib.Path(dist.locate_file(f)).resolve().parents[3]
        break
else:
    raise SystemExit(0)
try:
    import numpy
    numpy_include = numpy.get_include()
except ImportError:
    numpy_include = ''
print(prefix.as_posix(), sysconfig.get_paths()['include'], numpy_include, sep=';', end='')
]=])

execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c "${_fvs_probe}"
  OUTPUT_VARIABLE _fvs_out
  RESULT_VARIABLE _fvs_rc)
if(NOT _fvs_rc EQUAL 0)
  message(FATAL_ERROR "ros_wheels.cmake: probing ${Python3_EXECUTABLE} failed (exit ${_fvs_rc})")
endif()
if(_fvs_out STREQUAL "")
  message(STATUS "ros_wheels.cmake: no ROS 2 wheels in ${Python3_EXECUTABLE}; nothing to fix")
  return()
endif()

list(GET _fvs_out 0 FVS_WHEEL_PREFIX)
list(GET _fvs_out 1 FVS_PYTHON_INCLUDE)
list(GET _fvs_out 2 FVS_NUMPY_INCLUDE)
message(STATUS "ros_wheels.cmake: ROS 2 wheel prefix ${FVS_WHEEL_PREFIX}")

list(PREPEND CMAKE_PREFIX_PATH "${FVS_WHEEL_PREFIX}")
if(DEFINED ENV{AMENT_PREFIX_PATH} AND NOT "$ENV{AMENT_PREFIX_PATH}" STREQUAL "")
  set(ENV{AMENT_PREFIX_PATH} "${FVS_WHEEL_PREFIX}:$ENV{AMENT_PREFIX_PATH}")
else()
  set(ENV{AMENT_PREFIX_PATH} "${FVS_WHEEL_PREFIX}")
endif()

# Rewrite the wheel builder's include directories on every imported target, once all
# find_package() calls of the top-level CMakeLists.txt have run.
function(fvs_fix_wheel_include_dirs)
  get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs OR NOT _dirs MATCHES "/opt/python/cp3")
      continue()
    endif()
    set(_fixed "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/cp3[0-9]+-cp3[0-9]+.*/numpy/")
        if(FVS_NUMPY_INCLUDE)
          list(APPEND _fixed "${FVS_NUMPY_INCLUDE}")
        endif()
      elseif(_dir MATCHES "^/opt/python/cp3[0-9]+-cp3[0-9]+/include/")
        list(APPEND _fixed "${FVS_PYTHON_INCLUDE}")
      else()
        list(APPEND _fixed "${_dir}")
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _fixed)
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
  endforeach()
endfunction()

# A Python environment inside the source tree (the repository's .venv) puts its numpy and Python
# include directories, which rosidl_generator_py adds as PUBLIC, inside the source directory: CMake
# refuses to export such a target. They are needed only to compile: keep them for the build tree.
function(fvs_fix_source_tree_include_dirs)
  get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" BUILDSYSTEM_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      string(FIND "${_dir}" "${CMAKE_SOURCE_DIR}/" _at)
      if(_at EQUAL 0)
        list(APPEND _fixed "$<BUILD_INTERFACE:${_dir}>")
        set(_changed TRUE)
      else()
        list(APPEND _fixed "${_dir}")
      endif()
    endforeach()
    if(_changed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL fvs_fix_wheel_include_dirs)
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL fvs_fix_source_tree_include_dirs)
