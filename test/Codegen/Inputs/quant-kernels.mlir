// Quantized-weight kernels (q8, q4, f8e4m3), compiled by cpu-quant-kernels-numeric.mlir and
// checked by quant-kernels-harness.cpp against plain C++ loops with their own dequantisation.
// Buffers have room for 32 tokens; %n is the token count (dynamic T), as in kernels.mlir.
module {
  // y[T, 13] = x[T, 96] · dequant(w)ᵀ, #moe.quant<q8, group_size = 32>.
  func.func @linear_q8(%x: memref<32x96xf32>, %d: memref<13x96xi8>, %s: memref<13x3xf16>,
                     %n: index, %out: memref<32x13xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x96xf32> to tensor<32x96xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 96] [1, 1] : tensor<32x96xf32> to tensor<?x96xf32>
    %dt = bufferization.to_tensor %d restrict : memref<13x96xi8> to tensor<13x96xi8>
    %st = bufferization.to_tensor %s restrict : memref<13x3xf16> to tensor<13x3xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x96xf32>, tensor<13x96xi8>, tensor<13x3xf16>) -> tensor<?x13xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x13xf32> to tensor<32x13xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 13] [1, 1] : tensor<?x13xf32> into tensor<32x13xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x13xf32>, memref<32x13xf32>) -> ()
    return
  }

  // y[T, 13] = x[T, 96] · dequant(w)ᵀ, #moe.quant<q4, group_size = 32>.
  func.func @linear_q4(%x: memref<32x96xf32>, %d: memref<13x48xi8>, %s: memref<13x3xf16>,
                     %n: index, %out: memref<32x13xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x96xf32> to tensor<32x96xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 96] [1, 1] : tensor<32x96xf32> to tensor<?x96xf32>
    %dt = bufferization.to_tensor %d restrict : memref<13x48xi8> to tensor<13x48xi8>
    %st = bufferization.to_tensor %s restrict : memref<13x3xf16> to tensor<13x3xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x96xf32>, tensor<13x48xi8>, tensor<13x3xf16>) -> tensor<?x13xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x13xf32> to tensor<32x13xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 13] [1, 1] : tensor<?x13xf32> into tensor<32x13xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x13xf32>, memref<32x13xf32>) -> ()
    return
  }

  // q4 with K = 256: an even number of groups, so the int8 kernel takes two groups per step
  // (K = 96 has three and does not), as for Mixtral's K of 4096 and 14336.
  func.func @linear_q4_k256(%x: memref<32x256xf32>, %d: memref<13x128xi8>, %s: memref<13x8xf16>,
                            %n: index, %out: memref<32x13xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x256xf32> to tensor<32x256xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 256] [1, 1] : tensor<32x256xf32> to tensor<?x256xf32>
    %dt = bufferization.to_tensor %d restrict : memref<13x128xi8> to tensor<13x128xi8>
    %st = bufferization.to_tensor %s restrict : memref<13x8xf16> to tensor<13x8xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x256xf32>, tensor<13x128xi8>, tensor<13x8xf16>) -> tensor<?x13xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x13xf32> to tensor<32x13xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 13] [1, 1] : tensor<?x13xf32> into tensor<32x13xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x13xf32>, memref<32x13xf32>) -> ()
    return
  }

  // y[T, 32] = x[T, 96] · dequant(w)ᵀ, q8 and q4: N a multiple of the GEMM's 16 columns, so
  // calls of 8 rows or more (T = 17) take the packed GEMM with dequantised panels.
  func.func @linear_q8_wide(%x: memref<32x96xf32>, %d: memref<32x96xi8>, %s: memref<32x3xf16>,
                     %n: index, %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x96xf32> to tensor<32x96xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 96] [1, 1] : tensor<32x96xf32> to tensor<?x96xf32>
    %dt = bufferization.to_tensor %d restrict : memref<32x96xi8> to tensor<32x96xi8>
    %st = bufferization.to_tensor %s restrict : memref<32x3xf16> to tensor<32x3xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x96xf32>, tensor<32x96xi8>, tensor<32x3xf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }
  func.func @linear_q4_wide(%x: memref<32x96xf32>, %d: memref<32x48xi8>, %s: memref<32x3xf16>,
                     %n: index, %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x96xf32> to tensor<32x96xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 96] [1, 1] : tensor<32x96xf32> to tensor<?x96xf32>
    %dt = bufferization.to_tensor %d restrict : memref<32x48xi8> to tensor<32x48xi8>
    %st = bufferization.to_tensor %s restrict : memref<32x3xf16> to tensor<32x3xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x96xf32>, tensor<32x48xi8>, tensor<32x3xf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }

  // y[T, 32] = x[T, 544] · dequant(w)ᵀ: 17 groups, more than the 16 that q4's panel packer
  // prefetches ahead, so its prefetches wrap to the next panel's rows (T = 17: the GEMM).
  func.func @linear_q8_long(%x: memref<32x544xf32>, %d: memref<32x544xi8>, %s: memref<32x17xf16>,
                     %n: index, %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x544xf32> to tensor<32x544xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 544] [1, 1] : tensor<32x544xf32> to tensor<?x544xf32>
    %dt = bufferization.to_tensor %d restrict : memref<32x544xi8> to tensor<32x544xi8>
    %st = bufferization.to_tensor %s restrict : memref<32x17xf16> to tensor<32x17xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x544xf32>, tensor<32x544xi8>, tensor<32x17xf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }
  func.func @linear_q4_long(%x: memref<32x544xf32>, %d: memref<32x272xi8>, %s: memref<32x17xf16>,
                     %n: index, %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x544xf32> to tensor<32x544xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 544] [1, 1] : tensor<32x544xf32> to tensor<?x544xf32>
    %dt = bufferization.to_tensor %d restrict : memref<32x272xi8> to tensor<32x272xi8>
    %st = bufferization.to_tensor %s restrict : memref<32x17xf16> to tensor<32x17xf16>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x544xf32>, tensor<32x272xi8>, tensor<32x17xf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }

  // y[T, 13] = x[T, 40] · dequant(w)ᵀ, #moe.quant<f8e4m3>.
  func.func @linear_f8(%x: memref<32x40xf32>, %d: memref<13x40xf8E4M3FN>, %s: memref<13x1xf32>,
                     %n: index, %out: memref<32x13xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x40xf32> to tensor<32x40xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 40] [1, 1] : tensor<32x40xf32> to tensor<?x40xf32>
    %dt = bufferization.to_tensor %d restrict : memref<13x40xf8E4M3FN> to tensor<13x40xf8E4M3FN>
    %st = bufferization.to_tensor %s restrict : memref<13x1xf32> to tensor<13x1xf32>
    %y = moe.linear %xs, %dt scales %st {quant = #moe.quant<f8e4m3>}
        : (tensor<?x40xf32>, tensor<13x40xf8E4M3FN>, tensor<13x1xf32>) -> tensor<?x13xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x13xf32> to tensor<32x13xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 13] [1, 1] : tensor<?x13xf32> into tensor<32x13xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x13xf32>, memref<32x13xf32>) -> ()
    return
  }

  // out[r] = rows[r] · dequant(W[e(r)])ᵀ, q4 [5, 13, 64] experts, R = %n rows grouped by
  // the given offsets (some experts empty).
  func.func @grouped_q4(%rows: memref<64x64xf32>, %d: memref<5x13x32xi8>, %s: memref<5x13x2xf16>,
                        %offsets: memref<6xi32>, %n: index, %out: memref<64x13xf32>) {
    %rt = bufferization.to_tensor %rows restrict : memref<64x64xf32> to tensor<64x64xf32>
    %rs = tensor.extract_slice %rt[0, 0] [%n, 64] [1, 1] : tensor<64x64xf32> to tensor<?x64xf32>
    %dt = bufferization.to_tensor %d restrict : memref<5x13x32xi8> to tensor<5x13x32xi8>
    %st = bufferization.to_tensor %s restrict : memref<5x13x2xf16> to tensor<5x13x2xf16>
    %ot = bufferization.to_tensor %offsets restrict : memref<6xi32> to tensor<6xi32>
    %y = moe.grouped_matmul %rs, %dt, %ot scales %st {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x64xf32>, tensor<5x13x32xi8>, tensor<6xi32>, tensor<5x13x2xf16>) -> tensor<?x13xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x13xf32> to tensor<64x13xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 13] [1, 1] : tensor<?x13xf32> into tensor<64x13xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x13xf32>, memref<64x13xf32>) -> ()
    return
  }

  // The MoE block with q8 experts: D = 32, F = 64, E = 4, k = 2, bf16 gate.
  func.func @sparse_block_q8(%x: memref<32x32xf32>, %g: memref<4x32xbf16>,
      %d1: memref<4x64x32xi8>, %d3: memref<4x64x32xi8>, %d2: memref<4x32x64xi8>,
      %s1: memref<4x64x1xf16>, %s3: memref<4x64x1xf16>, %s2: memref<4x32x2xf16>, %n: index,
      %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x32xf32> to tensor<32x32xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 32] [1, 1] : tensor<32x32xf32> to tensor<?x32xf32>
    %gt = bufferization.to_tensor %g restrict : memref<4x32xbf16> to tensor<4x32xbf16>
    %d1t = bufferization.to_tensor %d1 restrict : memref<4x64x32xi8> to tensor<4x64x32xi8>
    %d3t = bufferization.to_tensor %d3 restrict : memref<4x64x32xi8> to tensor<4x64x32xi8>
    %d2t = bufferization.to_tensor %d2 restrict : memref<4x32x64xi8> to tensor<4x32x64xi8>
    %s1t = bufferization.to_tensor %s1 restrict : memref<4x64x1xf16> to tensor<4x64x1xf16>
    %s3t = bufferization.to_tensor %s3 restrict : memref<4x64x1xf16> to tensor<4x64x1xf16>
    %s2t = bufferization.to_tensor %s2 restrict : memref<4x32x2xf16> to tensor<4x32x2xf16>
    %y = moe.sparse_block %xs, %gt, %d1t, %d3t, %d2t scales %s1t, %s3t, %s2t
        {k = 2 : i64, quant = #moe.quant<q8, group_size = 32>}
        : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x64x32xi8>, tensor<4x64x32xi8>,
           tensor<4x32x64xi8>, tensor<4x64x1xf16>, tensor<4x64x1xf16>, tensor<4x32x2xf16>)
        -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }

  // The MoE block with q4 experts: D = 32, F = 64, E = 4, k = 2, bf16 gate, static T = 1.
  func.func @sparse_block_decode_q4(%x: memref<1x32xf32>, %g: memref<4x32xbf16>,
      %d1: memref<4x64x16xi8>, %d3: memref<4x64x16xi8>, %d2: memref<4x32x32xi8>,
      %s1: memref<4x64x1xf16>, %s3: memref<4x64x1xf16>, %s2: memref<4x32x2xf16>,
      %out: memref<1x32xf32>) {
    %xs = bufferization.to_tensor %x restrict : memref<1x32xf32> to tensor<1x32xf32>
    %gt = bufferization.to_tensor %g restrict : memref<4x32xbf16> to tensor<4x32xbf16>
    %d1t = bufferization.to_tensor %d1 restrict : memref<4x64x16xi8> to tensor<4x64x16xi8>
    %d3t = bufferization.to_tensor %d3 restrict : memref<4x64x16xi8> to tensor<4x64x16xi8>
    %d2t = bufferization.to_tensor %d2 restrict : memref<4x32x32xi8> to tensor<4x32x32xi8>
    %s1t = bufferization.to_tensor %s1 restrict : memref<4x64x1xf16> to tensor<4x64x1xf16>
    %s3t = bufferization.to_tensor %s3 restrict : memref<4x64x1xf16> to tensor<4x64x1xf16>
    %s2t = bufferization.to_tensor %s2 restrict : memref<4x32x2xf16> to tensor<4x32x2xf16>
    %y = moe.sparse_block %xs, %gt, %d1t, %d3t, %d2t scales %s1t, %s3t, %s2t
        {k = 2 : i64, quant = #moe.quant<q4, group_size = 32>}
        : (tensor<1x32xf32>, tensor<4x32xbf16>, tensor<4x64x16xi8>, tensor<4x64x16xi8>,
           tensor<4x32x32xi8>, tensor<4x64x1xf16>, tensor<4x64x1xf16>, tensor<4x32x2xf16>)
        -> tensor<1x32xf32>
    bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x32xf32>, memref<1x32xf32>) -> ()
    return
  }

  // q8 in panel order (#moe.panels<cols = 16, lanes = 8>: AVX2's GEMM panel), as
  // moe-lower-to-linalg reads a q8 expert that mixtral-compile stored so: data [N / 16, K, 16]
  // with [p, l * (K / 8) + j, r] = the code of W[16 p + r, l + 8 j], scales [N / 16, K / 32,
  // 16]. N = 32, K = 96 and K = 544: T = 17 takes the GEMM, fewer rows the panel GEMV.
  func.func @linear_q8_panels(%x: memref<32x96xf32>, %d: memref<2x96x16xi8>, %s: memref<2x3x16xf16>,
                     %n: index, %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x96xf32> to tensor<32x96xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 96] [1, 1] : tensor<32x96xf32> to tensor<?x96xf32>
    %dt = bufferization.to_tensor %d restrict : memref<2x96x16xi8> to tensor<2x96x16xi8>
    %st = bufferization.to_tensor %s restrict : memref<2x3x16xf16> to tensor<2x3x16xf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x32xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x32xf32>) -> tensor<?x32xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 12 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (n floordiv 16, k floordiv 32, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %dt, %st : tensor<?x96xf32>, tensor<2x96x16xi8>, tensor<2x3x16xf16>)
        outs(%acc : tensor<?x32xf32>)
        attrs = {moe.quant = #moe.quant<q8, group_size = 32>, moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %q: i8, %sc: f16, %c: f32):
      %qf = arith.sitofp %q : i8 to f32
      %sf = arith.extf %sc : f16 to f32
      %w = arith.mulf %qf, %sf : f32
      %p = arith.mulf %a, %w : f32
      %r = arith.addf %c, %p : f32
      linalg.yield %r : f32
    } -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }
  func.func @linear_q8_panels_long(%x: memref<32x544xf32>, %d: memref<2x544x16xi8>, %s: memref<2x17x16xf16>,
                     %n: index, %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x544xf32> to tensor<32x544xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 544] [1, 1] : tensor<32x544xf32> to tensor<?x544xf32>
    %dt = bufferization.to_tensor %d restrict : memref<2x544x16xi8> to tensor<2x544x16xi8>
    %st = bufferization.to_tensor %s restrict : memref<2x17x16xf16> to tensor<2x17x16xf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x32xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x32xf32>) -> tensor<?x32xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 68 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (n floordiv 16, k floordiv 32, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %dt, %st : tensor<?x544xf32>, tensor<2x544x16xi8>, tensor<2x17x16xf16>)
        outs(%acc : tensor<?x32xf32>)
        attrs = {moe.quant = #moe.quant<q8, group_size = 32>, moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %q: i8, %sc: f16, %c: f32):
      %qf = arith.sitofp %q : i8 to f32
      %sf = arith.extf %sc : f16 to f32
      %w = arith.mulf %qf, %sf : f32
      %p = arith.mulf %a, %w : f32
      %r = arith.addf %c, %p : f32
      linalg.yield %r : f32
    } -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }
}
