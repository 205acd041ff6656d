// The Mixtral expert GEMM shapes for tools/bench/gemm.sh: x[T, K] · W[N, K]ᵀ with T up to 128
// rows (a 128-token prefill's expert gets 32 on average; a dense projection all 128), w1/w3
// (K 4096, N 14336) and w2 (K 14336, N 4096), with bf16 weights (the model's) and f32 ones
// (the same data type as OpenBLAS's sgemm, which the benchmark runs beside them), and the
// gate/up pair with SwiGLU, fused and unfused.
module {
  func.func @w1_bf16(%x: memref<128x4096xf32>, %w: memref<14336x4096xbf16>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<14336x4096xbf16> to tensor<14336x4096xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x4096xf32>, tensor<14336x4096xbf16>) -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  func.func @w1_f32(%x: memref<128x4096xf32>, %w: memref<14336x4096xf32>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<14336x4096xf32> to tensor<14336x4096xf32>
    %y = moe.linear %xs, %wt : (tensor<?x4096xf32>, tensor<14336x4096xf32>) -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  func.func @w2_bf16(%x: memref<128x14336xf32>, %w: memref<4096x14336xbf16>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x14336xf32> to tensor<128x14336xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4096x14336xbf16> to tensor<4096x14336xbf16>
    %y = moe.linear %xs, %wt : (tensor<?x14336xf32>, tensor<4096x14336xbf16>) -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }
  func.func @w2_f32(%x: memref<128x14336xf32>, %w: memref<4096x14336xf32>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x14336xf32> to tensor<128x14336xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<4096x14336xf32> to tensor<4096x14336xf32>
    %y = moe.linear %xs, %wt : (tensor<?x14336xf32>, tensor<4096x14336xf32>) -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }
  // The same with W in panel order (#moe.panels<cols = 16, lanes = 8>, AVX2's GEMM panel:
  // what `mixtral-compile --pack` stores): Wp[p, l * 512 + j, r] = W[16 p + r, l + 8 j].
  func.func @w1_bf16_panels(%x: memref<128x4096xf32>, %w: memref<896x4096x16xbf16>, %n: index,
                   %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %wt = bufferization.to_tensor %w restrict : memref<896x4096x16xbf16> to tensor<896x4096x16xbf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x14336xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x14336xf32>) -> tensor<?x14336xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %wt : tensor<?x4096xf32>, tensor<896x4096x16xbf16>) outs(%acc : tensor<?x14336xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x14336xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  // The same with W in panel order (#moe.panels<cols = 16, lanes = 8>, AVX2's GEMM panel:
  // what `mixtral-compile --pack` stores): Wp[p, l * 1792 + j, r] = W[16 p + r, l + 8 j].
  func.func @w2_bf16_panels(%x: memref<128x14336xf32>, %w: memref<256x14336x16xbf16>, %n: index,
                   %out: memref<128x4096xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x14336xf32> to tensor<128x14336xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %wt = bufferization.to_tensor %w restrict : memref<256x14336x16xbf16> to tensor<256x14336x16xbf16>
    %zero = arith.constant 0.0 : f32
    %e = tensor.empty(%n) : tensor<?x4096xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x4096xf32>) -> tensor<?x4096xf32>
    %y = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 1792 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %wt : tensor<?x14336xf32>, tensor<256x14336x16xbf16>) outs(%acc : tensor<?x4096xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x4096xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<128x4096xf32> to tensor<128x4096xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 4096] [1, 1] : tensor<?x4096xf32> into tensor<128x4096xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<128x4096xf32>, memref<128x4096xf32>) -> ()
    return
  }

  // An expert's gate/up projection and SwiGLU, w1 and w3 in panel order, as moe.grouped_swiglu
  // lowers per expert: both GEMMs into zero-filled scratch, then the elementwise SwiGLU;
  // moe-cpu-vectorize-matmul makes it one GEMM with SwiGLU in its epilogue.
  func.func @w13_swiglu_bf16_panels(%x: memref<128x4096xf32>, %w1: memref<896x4096x16xbf16>,
      %w3: memref<896x4096x16xbf16>, %n: index, %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %w1t = bufferization.to_tensor %w1 restrict : memref<896x4096x16xbf16> to tensor<896x4096x16xbf16>
    %w3t = bufferization.to_tensor %w3 restrict : memref<896x4096x16xbf16> to tensor<896x4096x16xbf16>
    %zero = arith.constant 0.0 : f32
    %ot = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %os = tensor.extract_slice %ot[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %e = tensor.empty(%n) : tensor<?x14336xf32>
    %acc = linalg.fill ins(%zero : f32) outs(%e : tensor<?x14336xf32>) -> tensor<?x14336xf32>
    %g = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %w1t : tensor<?x4096xf32>, tensor<896x4096x16xbf16>) outs(%acc : tensor<?x14336xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x14336xf32>
    %u = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %w3t : tensor<?x4096xf32>, tensor<896x4096x16xbf16>) outs(%acc : tensor<?x14336xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x14336xf32>
    %h = linalg.generic {indexing_maps = [affine_map<(m, n) -> (m, n)>, affine_map<(m, n) -> (m, n)>,
        affine_map<(m, n) -> (m, n)>], iterator_types = ["parallel", "parallel"]}
        ins(%g, %u : tensor<?x14336xf32>, tensor<?x14336xf32>) outs(%os : tensor<?x14336xf32>) {
    ^bb0(%gv: f32, %uv: f32, %o: f32):
      %one = arith.constant 1.0 : f32
      %ng = arith.negf %gv : f32
      %ex = math.exp %ng : f32
      %den = arith.addf %ex, %one : f32
      %silu = arith.divf %gv, %den : f32
      %y = arith.mulf %silu, %uv : f32
      linalg.yield %y : f32
    } -> tensor<?x14336xf32>
    %h2 = tensor.insert_slice %h into %ot[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %h2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
  // The same through the caller's gate and up buffers (%gate, %up [128, 14336] f32), which
  // the fusion leaves alone: the two panel GEMMs and the SwiGLU pass as before the fused
  // kernel, for its speed-up measured in the same run.
  func.func @w13_swiglu_bf16_panels_unfused(%x: memref<128x4096xf32>,
      %w1: memref<896x4096x16xbf16>, %w3: memref<896x4096x16xbf16>, %n: index,
      %gate: memref<128x14336xf32>, %up: memref<128x14336xf32>, %out: memref<128x14336xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<128x4096xf32> to tensor<128x4096xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 4096] [1, 1] : tensor<128x4096xf32> to tensor<?x4096xf32>
    %w1t = bufferization.to_tensor %w1 restrict : memref<896x4096x16xbf16> to tensor<896x4096x16xbf16>
    %w3t = bufferization.to_tensor %w3 restrict : memref<896x4096x16xbf16> to tensor<896x4096x16xbf16>
    %zero = arith.constant 0.0 : f32
    %ot = bufferization.to_tensor %out restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %os = tensor.extract_slice %ot[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %gt = bufferization.to_tensor %gate restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %gs = tensor.extract_slice %gt[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %g0 = linalg.fill ins(%zero : f32) outs(%gs : tensor<?x14336xf32>) -> tensor<?x14336xf32>
    %ut = bufferization.to_tensor %up restrict writable : memref<128x14336xf32> to tensor<128x14336xf32>
    %us = tensor.extract_slice %ut[0, 0] [%n, 14336] [1, 1] : tensor<128x14336xf32> to tensor<?x14336xf32>
    %u0 = linalg.fill ins(%zero : f32) outs(%us : tensor<?x14336xf32>) -> tensor<?x14336xf32>
    %g = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %w1t : tensor<?x4096xf32>, tensor<896x4096x16xbf16>) outs(%g0 : tensor<?x14336xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x14336xf32>
    %u = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
        affine_map<(m, n, k) -> (n floordiv 16, (k mod 8) * 512 + k floordiv 8, n mod 16)>,
        affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]}
        ins(%xs, %w3t : tensor<?x4096xf32>, tensor<896x4096x16xbf16>) outs(%u0 : tensor<?x14336xf32>)
        attrs = {moe.panels = #moe.panels<cols = 16, lanes = 8>} {
    ^bb0(%a: f32, %b: bf16, %c: f32):
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %a, %bw : f32
      %s = arith.addf %c, %p : f32
      linalg.yield %s : f32
    } -> tensor<?x14336xf32>
    %h = linalg.generic {indexing_maps = [affine_map<(m, n) -> (m, n)>, affine_map<(m, n) -> (m, n)>,
        affine_map<(m, n) -> (m, n)>], iterator_types = ["parallel", "parallel"]}
        ins(%g, %u : tensor<?x14336xf32>, tensor<?x14336xf32>) outs(%os : tensor<?x14336xf32>) {
    ^bb0(%gv: f32, %uv: f32, %o: f32):
      %one = arith.constant 1.0 : f32
      %ng = arith.negf %gv : f32
      %ex = math.exp %ng : f32
      %den = arith.addf %ex, %one : f32
      %silu = arith.divf %gv, %den : f32
      %y = arith.mulf %silu, %uv : f32
      linalg.yield %y : f32
    } -> tensor<?x14336xf32>
    %h2 = tensor.insert_slice %h into %ot[0, 0] [%n, 14336] [1, 1] : tensor<?x14336xf32> into tensor<128x14336xf32>
    bufferization.materialize_in_destination %h2 in restrict writable %out : (tensor<128x14336xf32>, memref<128x14336xf32>) -> ()
    return
  }
}
