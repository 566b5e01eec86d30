# Sourced by run-on-gpu and run-all on the GPU machine: points the dynamic loader at PyTorch's CUDA
# libraries (its nvidia-* wheels: cuBLAS, cuRAND, NVRTC, ...), which the binaries dlopen at first use
# (vendor/README.md). libcuda.so.1 itself comes with the driver, from the system's library path.
# Sets GPU_LIB_DIRS (colon-separated) for reports.
GPU_LIB_DIRS=""
_gpu_sites=$(python3 -c 'import site; print(":".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
for _gpu_dir in ${_gpu_sites//:/ }; do
  for _gpu_lib in "$_gpu_dir"/nvidia/*/lib "$_gpu_dir"/nvidia/cu*/lib64; do
    [ -d "$_gpu_lib" ] && GPU_LIB_DIRS="$GPU_LIB_DIRS:$_gpu_lib"
  done
done
GPU_LIB_DIRS=${GPU_LIB_DIRS#:}
export GPU_LIB_DIRS
export LD_LIBRARY_PATH="${GPU_LIB_DIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _gpu_sites _gpu_dir _gpu_lib
