# The emulated build (PSA_EMULATED=ON): CUDA sources compiled by the host C++ compiler against
# cuda/emu, the CUDA headers used host-only, no CUDA runtime or driver. Included from
# CMakeLists.txt, which has set PSA_BINDING_SOURCES and NODE_ADDON_API_DIR.
find_path(PSA_CUDA_HEADERS cuda_runtime_api.h
  HINTS ENV CUDA_HOME ENV CUDA_PATH /usr/local/cuda
  PATH_SUFFIXES include targets/x86_64-linux/include)
if(NOT PSA_CUDA_HEADERS)
  message(FATAL_ERROR "psa-attention: the emulated build needs the CUDA headers (cuda_runtime_api.h); install the CUDA toolkit")
endif()

set(PSA_EMU_SOURCES cuda/emu/counters.cc cuda/emu/engine.cc cuda/emu/fiber.cc cuda/emu/runtime.cc cuda/emu/primitives_twin.cc)
# One library per kernel family (one .cu per kernel family or instantiation group), so a check
# program builds only the family it checks: the sanitizer trees, which build a handful of
# checks, skip the rest. psa_emu is all of them, for the addon.
file(GLOB PSA_ATTENTION_UNITS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/attention/*.cu)
file(GLOB PSA_DECODE_UNITS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/decode/*.cu)
file(GLOB PSA_BACKWARD_UNITS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/backward/*.cu)
set(PSA_EMU_KERNELS cuda/device_api.cu cuda/checks/mma_matmul.cu ${PSA_ATTENTION_UNITS} ${PSA_DECODE_UNITS} ${PSA_BACKWARD_UNITS})
# -O2, not the Release -O3: at -O3 g++ takes minutes on the fully unrolled head-dim-128 tile
# loops (390 s against 6 s), for no gain a test run could notice.
set_source_files_properties(${PSA_EMU_KERNELS} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-xc++;-O2")

# The model and the device API every family runs on.
add_library(psa_emu_runtime STATIC ${PSA_EMU_SOURCES} cuda/device_api.cu cuda/checks/mma_matmul.cu)
target_include_directories(psa_emu_runtime PUBLIC ${PSA_CUDA_HEADERS} ${CMAKE_SOURCE_DIR}/cuda)
target_compile_definitions(psa_emu_runtime PUBLIC PSA_EMULATED "PSA_CUDA_TARGETS=\"emulated\"")
find_package(Threads REQUIRED)
target_link_libraries(psa_emu_runtime PUBLIC Threads::Threads)
add_library(psa_emu_attention STATIC ${PSA_ATTENTION_UNITS})
target_link_libraries(psa_emu_attention PUBLIC psa_emu_runtime)
add_library(psa_emu_decode STATIC ${PSA_DECODE_UNITS})
target_link_libraries(psa_emu_decode PUBLIC psa_emu_runtime)
# The backward recomputes the forward (cuda/attention) before its own kernels.
add_library(psa_emu_backward STATIC ${PSA_BACKWARD_UNITS})
target_link_libraries(psa_emu_backward PUBLIC psa_emu_attention)
add_library(psa_emu INTERFACE)
target_link_libraries(psa_emu INTERFACE psa_emu_attention psa_emu_decode psa_emu_backward)

if(PSA_SANITIZE STREQUAL "thread")
  # Fibers hide races from ThreadSanitizer: each CUDA thread gets an OS thread instead.
  # -g1: line tables are all a report needs, at a fraction of full debug info's compile time.
  target_compile_definitions(psa_emu_runtime PUBLIC PSA_EMU_THREADS)
  target_compile_options(psa_emu_runtime PUBLIC -fsanitize=thread -g1 -O1)
  target_link_options(psa_emu_runtime PUBLIC -fsanitize=thread)
elseif(PSA_SANITIZE STREQUAL "address")
  target_compile_definitions(psa_emu_runtime PUBLIC PSA_EMU_THREADS)
  target_compile_options(psa_emu_runtime PUBLIC -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g1 -O1)
  target_link_options(psa_emu_runtime PUBLIC -fsanitize=address,undefined)
elseif(PSA_SANITIZE)
  message(FATAL_ERROR "PSA_SANITIZE must be thread or address, not ${PSA_SANITIZE}")
endif()

# The model's own check program: fragment layouts, collectives, the mma matmul, misuse reports.
add_executable(psa_model_check cuda/emu/tests/model_check.cc)
target_link_libraries(psa_model_check PRIVATE psa_emu_runtime)

# Each kernel family's check program against its host function becomes psa_<name>_check:
# cuda/emu/tests/<name>_check.cc (the forward, selection, top-k and counters), then the decode's
# and the backward's beside their kernels.
function(psa_kernel_checks family)
  foreach(check_source ${ARGN})
    get_filename_component(check_name ${check_source} NAME_WE)
    add_executable(psa_${check_name} ${check_source})
    target_link_libraries(psa_${check_name} PRIVATE ${family})
  endforeach()
endfunction()
file(GLOB PSA_ATTENTION_CHECKS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/emu/tests/*_check.cc)
list(FILTER PSA_ATTENTION_CHECKS EXCLUDE REGEX "model_check\\.cc$")
file(GLOB PSA_DECODE_CHECKS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/decode/*_check.cc)
file(GLOB PSA_BACKWARD_CHECKS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cuda/backward/check/*_check.cc)
psa_kernel_checks(psa_emu_attention ${PSA_ATTENTION_CHECKS})
psa_kernel_checks(psa_emu_decode ${PSA_DECODE_CHECKS})
psa_kernel_checks(psa_emu_backward ${PSA_BACKWARD_CHECKS})

if(PSA_ADDON)
  add_library(${PROJECT_NAME} SHARED ${PSA_BINDING_SOURCES} ${CMAKE_JS_SRC})
  set_target_properties(${PROJECT_NAME} PROPERTIES PREFIX "" SUFFIX ".node")
  target_include_directories(${PROJECT_NAME} PRIVATE ${CMAKE_JS_INC} ${NODE_ADDON_API_DIR})
  target_compile_definitions(${PROJECT_NAME} PRIVATE NAPI_VERSION=8 NAPI_CPP_EXCEPTIONS NODE_ADDON_API_DISABLE_DEPRECATED)
  target_link_libraries(${PROJECT_NAME} PRIVATE psa_emu ${CMAKE_JS_LIB})
  include(cmake/cpu.cmake)
endif()
message(STATUS "psa-attention: emulated build (sanitizer: ${PSA_SANITIZE})")
