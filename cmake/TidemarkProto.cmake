# Generates C++ messages and gRPC stubs for the given .proto files (paths relative to
# PROTO_ROOT) into the current binary dir, and returns the generated sources in OUT_SRCS.
function(tidemark_generate_proto)
  cmake_parse_arguments(ARG "" "PROTO_ROOT;OUT_SRCS" "PROTOS" ${ARGN})
  set(srcs)
  foreach(proto ${ARG_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(out_base ${CMAKE_CURRENT_BINARY_DIR}/${stem})
    add_custom_command(
      OUTPUT ${out_base}.pb.cc ${out_base}.pb.h ${out_base}.grpc.pb.cc ${out_base}.grpc.pb.h
      COMMAND ${Protobuf_PROTOC_EXECUTABLE}
              --proto_path=${ARG_PROTO_ROOT}
              --cpp_out=${CMAKE_CURRENT_BINARY_DIR}
              --grpc_out=${CMAKE_CURRENT_BINARY_DIR}
              --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN}
              ${ARG_PROTO_ROOT}/${proto}
      DEPENDS ${ARG_PROTO_ROOT}/${proto}
      COMMENT "protoc ${proto}")
    list(APPEND srcs ${out_base}.pb.cc ${out_base}.grpc.pb.cc)
  endforeach()
  set(${ARG_OUT_SRCS} ${srcs} PARENT_SCOPE)
endfunction()
