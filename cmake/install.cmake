# `cmake --install`: libtc static and shared, the public headers of the three
# layers merged under include/tc, tc.pc, the CMake package (tc::tc is the
# shared library, tc::tc_static the static one) and the tools.
include(CMakePackageConfigHelpers)

install(TARGETS tc tc_shared EXPORT tcTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS ${TC_TOOLS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Every header in a layer's include/tc is public (private ones stay beside the
# sources); the folders are copied whole, so a new header is installed with no
# edit here.  Two layers owning the same name would overwrite each other.
set(TC_HEADER_DIRS formats/include/tc calib/include/tc libcompress/include/tc)
set(TC_HEADER_NAMES)
foreach(dir ${TC_HEADER_DIRS})
  file(GLOB headers RELATIVE ${PROJECT_SOURCE_DIR}/${dir} CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${dir}/*.h)
  foreach(h ${headers})
    if(h IN_LIST TC_HEADER_NAMES)
      message(FATAL_ERROR "tc/${h} is in two layers' include folders; installed headers share include/tc")
    endif()
    list(APPEND TC_HEADER_NAMES ${h})
  endforeach()
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          FILES_MATCHING PATTERN "*.h")
endforeach()

# tc.pc finds its prefix from its own place, so a tree installed with
# `cmake --install --prefix P`, or moved, still works.
file(RELATIVE_PATH TC_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" TC_PC_TO_PREFIX "${TC_PC_TO_PREFIX}")
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(TC_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(TC_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()
set(TC_PC_LIBS_EXTRA "")
if(TC_SANITIZE)
  set(TC_PC_LIBS_EXTRA " -fsanitize=address,undefined")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/tc.pc.in ${PROJECT_BINARY_DIR}/tc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

set(TC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tc)
install(EXPORT tcTargets NAMESPACE tc:: DESTINATION ${TC_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tcConfig.cmake.in ${PROJECT_BINARY_DIR}/tcConfig.cmake
                              INSTALL_DESTINATION ${TC_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tcConfigVersion.cmake COMPATIBILITY ${TC_COMPATIBILITY})
install(FILES ${PROJECT_BINARY_DIR}/tcConfig.cmake ${PROJECT_BINARY_DIR}/tcConfigVersion.cmake
        DESTINATION ${TC_CMAKE_DIR})
