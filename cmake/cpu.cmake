# The native CPU backend (cpu/): the kernels as a static library the addon links, and their
# check program. Included from CMakeLists.txt and cmake/emulated.cmake once the addon target
# exists, and from cpu/CMakeLists.txt, which builds the check program alone.
# The AVX2+FMA kernel set is one source file compiled with those flags on x86-64 only; the
# rest is baseline code, so the library loads on any CPU and picks its kernels at run time.
set(PSA_CPU_DIR ${CMAKE_CURRENT_LIST_DIR}/../cpu)
find_package(Threads REQUIRED)

add_library(psa_cpu STATIC
  ${PSA_CPU_DIR}/dispatch.cc ${PSA_CPU_DIR}/portable.cc ${PSA_CPU_DIR}/forward.cc ${PSA_CPU_DIR}/backward.cc
  ${PSA_CPU_DIR}/layout.cc ${PSA_CPU_DIR}/select.cc ${PSA_CPU_DIR}/thread_pool.cc
  ${PSA_CPU_DIR}/decode.cc)
set_target_properties(psa_cpu PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_include_directories(psa_cpu PUBLIC ${PSA_CPU_DIR})
target_compile_options(psa_cpu PRIVATE -Wall -Wextra)
target_link_libraries(psa_cpu PUBLIC Threads::Threads)
# Vector types cross no ABI boundary: the kernel functions have internal linkage.
set_source_files_properties(${PSA_CPU_DIR}/portable.cc PROPERTIES COMPILE_OPTIONS "-Wno-psabi")
# Block estimates must round as the reference's float64 does: no fused multiply-adds.
set_source_files_properties(${PSA_CPU_DIR}/select.cc ${PSA_CPU_DIR}/decode.cc PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  target_sources(psa_cpu PRIVATE ${PSA_CPU_DIR}/avx2.cc ${PSA_CPU_DIR}/avx512.cc)
  set_source_files_properties(${PSA_CPU_DIR}/avx2.cc PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-ffp-contract=fast;-Wno-psabi")
  set_source_files_properties(${PSA_CPU_DIR}/avx512.cc PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512vl;-mavx512dq;-mavx2;-mfma;-ffp-contract=fast;-Wno-psabi")
  target_compile_definitions(psa_cpu PRIVATE PSA_CPU_HAVE_AVX2)
endif()

if(PROJECT_NAME STREQUAL "psa_cpu_check")
  add_executable(psa_cpu_forward_check ${PSA_CPU_DIR}/tests/forward_check.cc)
  target_link_libraries(psa_cpu_forward_check PRIVATE psa_cpu)
  add_executable(psa_cpu_backward_check ${PSA_CPU_DIR}/tests/backward_check.cc)
  target_link_libraries(psa_cpu_backward_check PRIVATE psa_cpu)
endif()

# In the addon build (included after the addon target exists): the cpu entry points join it.
if(TARGET ${PROJECT_NAME})
  target_sources(${PROJECT_NAME} PRIVATE ${PSA_CPU_DIR}/../binding/cpu_attention.cc ${PSA_CPU_DIR}/../binding/cpu_decode.cc)
  target_link_libraries(${PROJECT_NAME} PRIVATE psa_cpu)
endif()
