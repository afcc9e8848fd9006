using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Validation;

/// <summary>
/// Validation by the user's own program (<c>VALIDATION_COMMAND</c>, SPEC D21): one process per validation, started with
/// its argv (never through a shell, so nothing in an argument or the input is ever run as a command). It reads the request
/// JSON <c>{"workId","input","requestedAt"}</c> on stdin and writes a verdict JSON on stdout,
/// <c>{"verdict":"pass"|"fail","reason":"…"}</c>. A non-zero exit, output that is not such a verdict, more than
/// <see cref="MaxOutputBytes"/> of output, or no answer within <c>VALIDATION_TIMEOUT_MS</c> (the process is killed, with
/// its children) is a fail verdict whose reason says which. The program also gets <c>CFN_WORK_ID</c> and
/// <c>CFN_VALIDATOR_ID</c> in its environment.
/// </summary>
public sealed class CommandValidation : IValidation
{
    /// <summary>Most stdout read from the program; more is a fail (a verdict is a few hundred bytes).</summary>
    public const int MaxOutputBytes = 1 << 20;

    /// <summary>Most stderr kept for the reason of a failed run.</summary>
    private const int MaxErrorChars = 400;

    private readonly IReadOnlyList<string> _argv;
    private readonly TimeSpan _timeout;
    private readonly string? _validatorId;
    private readonly ILogger _logger;

    /// <summary>Runs <see cref="ValidatorOptions.Command"/> with <see cref="ValidatorOptions.Timeout"/>.</summary>
    /// <param name="options">Validated options with a command.</param>
    /// <param name="validatorId">Passed to the program as <c>CFN_VALIDATOR_ID</c> (optional).</param>
    /// <param name="logger">Logger of each run's outcome (optional).</param>
    public CommandValidation(ValidatorOptions options, string? validatorId = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _argv = options.Command ?? throw new ArgumentException("the options name no VALIDATION_COMMAND", nameof(options));
        _timeout = options.Timeout;
        _validatorId = validatorId;
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    /// <inheritdoc/>
    public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var start = new ProcessStartInfo(_argv[0])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var argument in _argv.Skip(1))
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["CFN_WORK_ID"] = request.WorkId;
        if (_validatorId is not null)
        {
            start.Environment["CFN_VALIDATOR_ID"] = _validatorId;
        }

        using var process = new Process { StartInfo = start };
        try
        {
            process.Start();
        }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException)
        {
            return Fail(request, $"VALIDATION_COMMAND could not start {_argv[0]}: {e.Message}");
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_timeout);
        var output = ReadBoundedAsync(process.StandardOutput, MaxOutputBytes, timeout.Token);
        var errors = ReadBoundedAsync(process.StandardError, MaxErrorChars, timeout.Token);
        try
        {
            await WriteInputAsync(process, request, timeout.Token).ConfigureAwait(false);
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            var (stdout, truncated) = await output.ConfigureAwait(false);
            var (stderr, _) = await errors.ConfigureAwait(false);
            if (process.ExitCode != 0)
            {
                var detail = FirstLine(stderr);
                return Fail(request, string.Create(CultureInfo.InvariantCulture,
                    $"validation command exited with code {process.ExitCode}{(detail.Length > 0 ? ": " + detail : "")}"));
            }

            if (truncated)
            {
                return Fail(request, $"validation command wrote more than {MaxOutputBytes} bytes");
            }

            return VerdictParser.TryParse(stdout, out var verdict, out var error)
                ? Log(request, verdict!)
                : Fail(request, "validation command output is not a verdict: " + error);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            Kill(process);
            return Fail(request, string.Create(CultureInfo.InvariantCulture,
                $"validation command timed out after {(long)_timeout.TotalMilliseconds} ms and was killed"));
        }
        catch (OperationCanceledException)
        {
            Kill(process); // the validator is stopping: no verdict, the request stays for whoever takes over
            throw;
        }
    }

    private static async Task WriteInputAsync(Process process, ValidationRequest request, CancellationToken cancellationToken)
    {
        try
        {
            await process.StandardInput.WriteAsync(Json.Serialize(request).AsMemory(), cancellationToken).ConfigureAwait(false);
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The program exited without reading all of its input: its exit code and output decide.
        }
    }

    /// <summary>Reads up to <paramref name="limit"/> characters, then drains the rest (so the program never blocks on a full pipe).</summary>
    private static async Task<(string Text, bool Truncated)> ReadBoundedAsync(StreamReader reader, int limit, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        var buffer = new char[4096];
        var truncated = false;
        int read;
        while ((read = await reader.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
        {
            var keep = Math.Min(read, limit - text.Length);
            if (keep > 0)
            {
                text.Append(buffer, 0, keep);
            }

            truncated |= keep < read;
        }

        return (text.ToString(), truncated);
    }

    private static string FirstLine(string text)
    {
        var line = text.Trim().Split('\n', 2)[0].Trim();
        return line.Length > 200 ? line[..200] : line;
    }

    private static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // it had exited already
        }
    }

    private ValidationVerdict Fail(ValidationRequest request, string reason) => Log(request, ValidationVerdict.Fail(reason));

    private ValidationVerdict Log(ValidationRequest request, ValidationVerdict verdict)
    {
        _logger.LogInformation("Validation command answered workId={WorkId} verdict={Verdict} reason={Reason}",
            request.WorkId, verdict.Wire, verdict.Reason ?? "");
        return verdict;
    }
}
