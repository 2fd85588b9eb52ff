# TIDEMARK_SANITIZE: AddressSanitizer + UndefinedBehaviorSanitizer on every target, stopping at
# the first report (no recovery), with frame pointers so that reports have whole stacks.
# TIDEMARK_FUZZ: additionally libFuzzer's coverage instrumentation on every target
# (-fsanitize=fuzzer-no-link), so that the fuzz targets in fuzz/ are guided through the
# libraries they call; only those targets link libFuzzer's main (-fsanitize=fuzzer). Other
# executables (unit and integration tests) still link and run as usual in the same build.
if(TIDEMARK_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "TIDEMARK_FUZZ=ON needs clang (libFuzzer): configure with "
                        "-DCMAKE_CXX_COMPILER=clang++ (scripts/fuzz.sh does)")
  endif()
  set(TIDEMARK_SANITIZE ON)
endif()

if(TIDEMARK_SANITIZE)
  set(tidemark_sanitize_flags -fsanitize=address,undefined -fno-sanitize-recover=all
                              -fno-omit-frame-pointer)
  add_compile_options(${tidemark_sanitize_flags})
  add_link_options(-fsanitize=address,undefined)
  if(TIDEMARK_FUZZ)
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
endif()
